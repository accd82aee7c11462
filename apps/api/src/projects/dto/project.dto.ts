import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Matches, ValidateBy } from 'class-validator';
import { IsName, IsOptionalNotNull, IsText } from '../../common/validators';

/** Days of history (events, deliveries, attempts) a project keeps: a whole number from 1 to 90. */
function RetentionDays() {
  return applyDecorators(
    ApiPropertyOptional({ type: 'integer', minimum: 1, maximum: 90, example: 30, description: 'Days of history kept; left out: the RETENTION_DAYS setting (30 by default)' }),
    IsOptionalNotNull(),
    ValidateBy({
      name: 'isRetentionDays',
      validator: {
        validate: (value: unknown) => Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 90,
        defaultMessage: () => 'retentionDays must be a whole number of days from 1 to 90',
      },
    }),
  );
}

export class CreateProjectDto {
  @ApiProperty({ example: 'my-mcp-server' })
  @IsName()
  name: string;

  @ApiPropertyOptional({ description: 'May be left out when the caller belongs to exactly one organization' })
  @IsOptionalNotNull()
  @IsText()
  @Matches(/^org_[0-9A-Z]{26}$/, { message: 'organizationId must be an organization id' })
  organizationId?: string;

  @RetentionDays()
  retentionDays?: number;
}

export class UpdateProjectDto {
  @ApiPropertyOptional({ example: 'my-mcp-server' })
  @IsOptionalNotNull()
  @IsName()
  name?: string;

  @RetentionDays()
  retentionDays?: number;
}
