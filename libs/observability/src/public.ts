import { SetMetadata } from '@nestjs/common';

export const PUBLIC_ROUTE = 'bellhop:public';

/** Routes anyone may call (signup, login, health, metrics, docs). Everything else needs a bearer token. */
export const Public = () => SetMetadata(PUBLIC_ROUTE, true);
