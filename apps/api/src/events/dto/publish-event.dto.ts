import { ApiProperty } from '@nestjs/swagger';
import { IsIn, IsObject } from 'class-validator';
import { EVENT_TYPE_NAMES } from '@bellhop/domain';

export class PublishEventDto {
  @ApiProperty({ enum: EVENT_TYPE_NAMES, example: 'baseline.drift_detected' })
  @IsIn(EVENT_TYPE_NAMES as string[], { message: `event must be one of: ${EVENT_TYPE_NAMES.join(', ')}` })
  event: string;

  @ApiProperty({ type: 'object', additionalProperties: true, description: 'The event payload, sent to receivers as `data`' })
  @IsObject({ message: 'data must be a JSON object' })
  data: Record<string, unknown>;
}
