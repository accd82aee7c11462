import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { Matches, MaxLength, MinLength } from 'class-validator';
import { IsOptionalNotNull, IsText } from '../../common/validators';

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);

export class CreateProjectDto {
  @ApiProperty({ example: 'my-mcp-server' })
  @Transform(trim)
  @IsText()
  @MinLength(1, { message: 'name must not be empty' })
  @MaxLength(200)
  name: string;

  @ApiPropertyOptional({ description: 'May be left out when the caller belongs to exactly one organization' })
  @IsOptionalNotNull()
  @IsText()
  @Matches(/^org_[0-9A-Z]{26}$/, { message: 'organizationId must be an organization id' })
  organizationId?: string;
}

export class UpdateProjectDto {
  @ApiProperty({ example: 'my-mcp-server' })
  @Transform(trim)
  @IsText()
  @MinLength(1, { message: 'name must not be empty' })
  @MaxLength(200)
  name: string;
}
