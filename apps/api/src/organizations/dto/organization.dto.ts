import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsIn, IsISO8601 } from 'class-validator';
import { IsEmailAddress, IsName, IsOptionalNotNull } from '../../common/validators';

export const ROLES = ['owner', 'admin', 'member'] as const;
export const PLANS = ['free', 'solo', 'team'] as const;

export class CreateOrganizationDto {
  @ApiProperty({ example: 'Acme' })
  @IsName()
  name: string;
}

export class UpdateOrganizationDto {
  @ApiPropertyOptional()
  @IsOptionalNotNull()
  @IsName()
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
  @IsName()
  name: string;

  @ApiProperty({ enum: ROLES })
  @IsIn(ROLES as unknown as string[], { message: `role must be one of: ${ROLES.join(', ')}` })
  role: (typeof ROLES)[number];

  @ApiPropertyOptional({ format: 'date-time', description: 'When the token stops working (401 after it); in the future. Left out: never.' })
  @IsOptionalNotNull()
  @IsISO8601({ strict: true, strictSeparator: true }, { message: 'expiresAt must be an ISO-8601 time' })
  expiresAt?: string;
}
