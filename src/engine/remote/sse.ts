// Server-sent events read from a response body: `event:` and `data:` fields, events split by a
// blank line (LF or CRLF). Comments and other fields are ignored.

export interface SseEvent {
  event: string | null;
  data: string;
}

export async function* readSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let event: string | null = null;
  let data: string[] = [];
  const line = (text: string): SseEvent | null => {
    if (text === '') {
      const done = data.length ? { event, data: data.join('\n') } : null;
      event = null;
      data = [];
      return done;
    }
    if (text.startsWith(':')) return null;
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    return null;
  };
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const text = buffer.slice(0, newline).replace(/\r$/, '');
      buffer = buffer.slice(newline + 1);
      const done = line(text);
      if (done) yield done;
    }
  }
  buffer += decoder.decode();
  if (buffer) {
    const done = line(buffer.replace(/\r$/, ''));
    if (done) yield done;
  }
  const last = line('');
  if (last) yield last;
}
