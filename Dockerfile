# One image for both apps; compose picks the command.
FROM node:20.20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm install --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev
# Prisma's schema engine where the migrations load it (scripts/db.js): the image's user cannot write node_modules.
RUN cp node_modules/prisma/build/schema_engine_bg.wasm node_modules/@prisma/internals/build/

FROM node:20.20-bookworm-slim
ENV NODE_ENV=production
# Two malloc arenas shared by all threads instead of one per thread (see scripts/node-runtime.js).
ENV MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/prisma ./prisma
COPY --from=build /app/scripts ./scripts
# The dashboard's static files, served by the API at /dashboard/ from the package root.
COPY --from=build /app/apps/dashboard ./apps/dashboard
USER node
EXPOSE 3000 3001
# The heap flags of scripts/node-runtime.js: docker-compose.yml gives the same to the worker.
CMD ["node", "--max-old-space-size=512", "dist/apps/api/src/main.js"]
