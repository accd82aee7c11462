/** The event catalog served by GET /event-types. Payload `data` is free-form JSON described by `schema`. */
export interface EventTypeDefinition {
  type: string;
  description: string;
  schema: Record<string, unknown>;
  example: Record<string, unknown>;
}

const severity = { type: 'string', enum: ['info', 'low', 'medium', 'high', 'critical'] };

export const EVENT_TYPES: readonly EventTypeDefinition[] = [
  {
    type: 'baseline.uploaded',
    description: 'A new behavioural baseline of an MCP server was uploaded to the project.',
    schema: {
      type: 'object',
      properties: {
        baselineId: { type: 'string' },
        serverName: { type: 'string' },
        version: { type: 'string' },
        toolCount: { type: 'integer', minimum: 0 },
        uploadedBy: { type: 'string' },
        url: { type: 'string', format: 'uri' },
      },
      additionalProperties: true,
    },
    example: {
      baselineId: 'bl_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T',
      serverName: 'my-mcp-server',
      version: '1.4.0',
      toolCount: 12,
      uploadedBy: 'ci',
      url: 'https://bellwether.example/projects/my-mcp-server/baselines/bl_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T',
    },
  },
  {
    type: 'baseline.drift_detected',
    description: 'A check found that the server behaves differently from its accepted baseline.',
    schema: {
      type: 'object',
      properties: {
        baselineId: { type: 'string' },
        previousBaselineId: { type: 'string' },
        severity,
        summary: { type: 'string' },
        changes: {
          type: 'array',
          items: {
            type: 'object',
            properties: { tool: { type: 'string' }, change: { type: 'string' }, severity, detail: { type: 'string' } },
          },
        },
      },
      additionalProperties: true,
    },
    example: {
      baselineId: 'bl_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T',
      previousBaselineId: 'bl_01JH2X7YJ5P1VP3L6M7N8Q9R0S',
      severity: 'medium',
      summary: '2 tools changed their schema',
      changes: [
        { tool: 'search', change: 'schema_changed', severity: 'medium', detail: 'parameter "limit" became required' },
        { tool: 'fetch', change: 'removed', severity: 'high', detail: 'tool no longer listed' },
      ],
    },
  },
  {
    type: 'baseline.security_finding',
    description: 'A security check raised a finding against the server.',
    schema: {
      type: 'object',
      properties: {
        baselineId: { type: 'string' },
        findingId: { type: 'string' },
        severity,
        category: { type: 'string' },
        tool: { type: 'string' },
        title: { type: 'string' },
        description: { type: 'string' },
      },
      additionalProperties: true,
    },
    example: {
      baselineId: 'bl_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T',
      findingId: 'fnd_01JH3YA1B2C3D4E5F6G7H8J9K0',
      severity: 'high',
      category: 'prompt_injection',
      tool: 'fetch',
      title: 'Tool output is passed to the model unfiltered',
      description: 'The fetch tool returns remote content verbatim, which can carry instructions.',
    },
  },
];

export const EVENT_TYPE_NAMES: readonly string[] = EVENT_TYPES.map((t) => t.type);

export function findEventType(type: string): EventTypeDefinition | undefined {
  return EVENT_TYPES.find((t) => t.type === type);
}
