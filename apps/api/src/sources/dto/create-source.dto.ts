import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsIn, IsString, Matches, MaxLength, MinLength } from 'class-validator';
import { SOURCE_KINDS } from '@bellhop/domain';
import { SOURCE_SECRET_PATTERN } from '@bellhop/signing';
import { IsOptionalNotNull, IsText } from '../../common/validators';

/** Longest source name: a repository's full name, with room to say where it is. */
export const SOURCE_NAME_MAX_LENGTH = 100;

export class CreateSourceDto {
  @ApiProperty({ example: 'acme/api on GitHub', maxLength: SOURCE_NAME_MAX_LENGTH })
  @Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value))
  @IsText()
  @MinLength(1, { message: 'name must not be empty' })
  @MaxLength(SOURCE_NAME_MAX_LENGTH)
  name: string;

  @ApiProperty({ enum: SOURCE_KINDS, description: 'github: verified by X-Hub-Signature-256; gitlab: by X-Gitlab-Token' })
  @IsIn(SOURCE_KINDS as unknown as string[], { message: `type must be one of: ${SOURCE_KINDS.join(', ')}` })
  type: 'github' | 'gitlab';

  @ApiPropertyOptional({
    example: 'a-long-random-string-you-chose',
    description: "GitHub's Secret or GitLab's Secret token: 16 to 256 printable ASCII characters, no spaces; generated when absent",
  })
  @IsOptionalNotNull()
  @IsString()
  @Matches(SOURCE_SECRET_PATTERN, { message: 'secret must be 16 to 256 printable ASCII characters without spaces' })
  secret?: string;
}
