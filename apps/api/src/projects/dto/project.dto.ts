import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Matches } from 'class-validator';
import { IsName, IsOptionalNotNull, IsText } from '../../common/validators';

export class CreateProjectDto {
  @ApiProperty({ example: 'my-mcp-server' })
  @IsName()
  name: string;

  @ApiPropertyOptional({ description: 'May be left out when the caller belongs to exactly one organization' })
  @IsOptionalNotNull()
  @IsText()
  @Matches(/^org_[0-9A-Z]{26}$/, { message: 'organizationId must be an organization id' })
  organizationId?: string;
}

export class UpdateProjectDto {
  @ApiProperty({ example: 'my-mcp-server' })
  @IsName()
  name: string;
}
