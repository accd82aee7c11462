import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsIn, MaxLength, MinLength } from 'class-validator';
import { IsEmailAddress, IsOptionalNotNull, IsText } from '../../common/validators';

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);
export const ROLES = ['owner', 'admin', 'member'] as const;
export const PLANS = ['free', 'solo', 'team'] as const;

export class CreateOrganizationDto {
  @ApiProperty({ example: 'Acme' })
  @Transform(trim)
  @IsText()
  @MinLength(1, { message: 'name must not be empty' })
  @MaxLength(200)
  name: string;
}

export class UpdateOrganizationDto {
  @ApiPropertyOptional()
  @IsOptionalNotNull()
  @Transform(trim)
  @IsText()
  @MinLength(1, { message: 'name must not be empty' })
  @MaxLength(200)
  name?: string;

  @ApiPropertyOptional({ enum: PLANS })
  @IsOptionalNotNull()
  @IsIn(PLANS as unknown as string[], { message: `plan must be one of: ${PLANS.join(', ')}` })
  plan?: (typeof PLANS)[number];
}

export class AddMemberDto {
  @ApiProperty({ example: 'grace@example.com' })
  @Transform(({ value }) => (typeof value === 'string' ? value.trim().toLowerCase() : value))
  @IsEmailAddress()
  email: string;

  @ApiProperty({ enum: ROLES })
  @IsIn(ROLES as unknown as string[], { message: `role must be one of: ${ROLES.join(', ')}` })
  role: (typeof ROLES)[number];
}

export class UpdateMemberDto {
  @ApiProperty({ enum: ROLES })
  @IsIn(ROLES as unknown as string[], { message: `role must be one of: ${ROLES.join(', ')}` })
  role: (typeof ROLES)[number];
}

export class CreateApiTokenDto {
  @ApiProperty({ example: 'ci' })
  @Transform(trim)
  @IsText()
  @MinLength(1, { message: 'name must not be empty' })
  @MaxLength(200)
  name: string;

  @ApiProperty({ enum: ROLES })
  @IsIn(ROLES as unknown as string[], { message: `role must be one of: ${ROLES.join(', ')}` })
  role: (typeof ROLES)[number];
}
