import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsObject, IsOptional, Matches, MaxLength } from 'class-validator';
import { CATEGORY_PATTERN, CUSTOM_EVENT_TYPE_LIMITS, CUSTOM_EVENT_TYPE_PATTERN, EVENT_CATEGORIES, SOURCE_CATEGORY } from '@bellhop/domain';
import { IsOptionalNotNull, IsText, RawJson } from '../../common/validators';

export class CreateEventTypeDto {
  @ApiProperty({ example: 'deploy.finished', pattern: CUSTOM_EVENT_TYPE_PATTERN.source, maxLength: CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength })
  @IsText()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.typeMaxLength)
  @Matches(CUSTOM_EVENT_TYPE_PATTERN, { message: 'type must be lowercase dot-separated names, such as deploy.finished (^[a-z][a-z0-9_-]*(\\.[a-z0-9_-]+)+$)' })
  type: string;

  @ApiPropertyOptional({ maxLength: CUSTOM_EVENT_TYPE_LIMITS.descriptionMaxLength })
  @IsOptional()
  @IsText()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.descriptionMaxLength)
  description?: string | null;

  @ApiPropertyOptional({ example: 'deploy', description: 'Defaults to the part of type before the first dot', pattern: CATEGORY_PATTERN.source })
  @IsOptionalNotNull()
  @IsText()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.categoryMaxLength)
  @Matches(CATEGORY_PATTERN, { message: 'category must be a lowercase name (^[a-z][a-z0-9_-]*$)' })
  category?: string;

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    nullable: true,
    example: { type: 'object', properties: { service: { type: 'string' } }, required: ['service'] },
    description: 'JSON Schema (draft 2020-12, at most 64 KiB) that published data must match; none = any object',
  })
  @IsOptional()
  @RawJson()
  @IsObject({ message: 'schema must be a JSON Schema object' })
  schema?: Record<string, unknown> | null;
}

export class UpdateEventTypeDto {
  @ApiPropertyOptional({ maxLength: CUSTOM_EVENT_TYPE_LIMITS.descriptionMaxLength, nullable: true })
  @IsOptional()
  @IsText()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.descriptionMaxLength)
  description?: string | null;

  @ApiPropertyOptional({ type: 'object', additionalProperties: true, nullable: true, description: 'null removes the schema' })
  @IsOptional()
  @RawJson()
  @IsObject({ message: 'schema must be a JSON Schema object' })
  schema?: Record<string, unknown> | null;
}

export class EventTypesQuery {
  @ApiPropertyOptional({ example: 'baseline', description: `Only this category (built in: ${[...EVENT_CATEGORIES, SOURCE_CATEGORY].join(', ')})` })
  @IsOptionalNotNull()
  @IsText()
  @MaxLength(CUSTOM_EVENT_TYPE_LIMITS.categoryMaxLength)
  category?: string;
}

