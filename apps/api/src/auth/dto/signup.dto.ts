import { ApiProperty } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { MaxLength, MinLength } from 'class-validator';
import { IsEmailAddress, IsName, IsText } from '../../common/validators';

export class SignupDto {
  @ApiProperty({ example: 'ada@example.com' })
  @Transform(({ value }) => (typeof value === 'string' ? value.trim().toLowerCase() : value))
  @IsEmailAddress()
  @MaxLength(254)
  email: string;

  @ApiProperty({ minLength: 10, example: 'correct horse battery' })
  @IsText()
  @MinLength(10, { message: 'password must be at least 10 characters' })
  @MaxLength(256)
  password: string;

  @ApiProperty({ example: 'Ada Lovelace' })
  @IsName()
  name: string;
}
