/**
 * Server-sent events read with `fetch` rather than `EventSource`: EventSource cannot send the
 * `Authorization` header that `ServerConnection` adds (token, and JupyterHub's), so the stream is
 * read from `ServerConnection.makeRequest`'s response body and parsed here.
 */

export interface ISSEMessage {
  event: string;
  data: string;
  id?: string;
}

/** An incremental parser of the `text/event-stream` format: feed it chunks, get messages. */
export class SSEParser {
  private _buffer = '';
  private _event = '';
  private _data: string[] = [];
  /** The last `id:` seen (a byte offset for our server), to resume with `Last-Event-ID`. */
  lastId = '';

  feed(chunk: string): ISSEMessage[] {
    this._buffer += chunk;
    const out: ISSEMessage[] = [];
    let newline: number;
    while ((newline = this._buffer.search(/\r\n|\n|\r/)) >= 0) {
      const line = this._buffer.slice(0, newline);
      const width = this._buffer.startsWith('\r\n', newline) ? 2 : 1;
      this._buffer = this._buffer.slice(newline + width);
      if (line === '') {
        if (this._data.length) {
          out.push({
            event: this._event || 'message',
            data: this._data.join('\n'),
            id: this.lastId || undefined
          });
        }
        this._event = '';
        this._data = [];
        continue;
      }
      if (line.startsWith(':')) {
        continue; // a comment (keep-alive)
      }
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) {
        value = value.slice(1);
      }
      if (name === 'event') {
        this._event = value;
      } else if (name === 'data') {
        this._data.push(value);
      } else if (name === 'id') {
        this.lastId = value;
      }
    }
    return out;
  }
}
