import { ApiProperty } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { MaxLength } from 'class-validator';
import { IsText } from '../../common/validators';

export class LoginDto {
  @ApiProperty({ example: 'ada@example.com' })
  @Transform(({ value }) => (typeof value === 'string' ? value.trim().toLowerCase() : value))
  @IsText()
  @MaxLength(254)
  email: string;

  @ApiProperty()
  @IsText()
  @MaxLength(256)
  password: string;
}
