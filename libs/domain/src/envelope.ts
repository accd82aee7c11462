/** The event as a receiver of the `bellwether` format gets it. */
export interface Envelope {
  event: string;
  timestamp: string;
  project: { id: string; name: string };
  data: unknown;
}

export function envelopeOf(input: { event: string; timestamp: Date; project: { id: string; name: string }; data: unknown }): Envelope {
  return {
    event: input.event,
    timestamp: input.timestamp.toISOString(),
    project: { id: input.project.id, name: input.project.name },
    data: input.data,
  };
}

/**
 * The exact body a receiver gets. Built once when the event is accepted, stored as text, and sent
 * unchanged on every attempt, so signatures and receivers' deduplication see the same bytes.
 */
export function buildEnvelope(input: { event: string; timestamp: Date; project: { id: string; name: string }; data: unknown }): string {
  return JSON.stringify(envelopeOf(input));
}
