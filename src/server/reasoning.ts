// Splitting a completion into OpenAI-style `reasoning_content` (the think block) and `content`
// (the answer), whole or while it streams.
import type { GenerateResult } from '../engine/engine';

/** Content of a finished completion: the answer block, else the text after </think>, else all of it. */
export function contentOf(result: GenerateResult, opensThink: boolean): string {
  if (result.answer !== null) return result.answer;
  const text = opensThink ? `<think>${result.text}` : result.text;
  const close = text.indexOf('</think>');
  if (close >= 0) return text.slice(close + '</think>'.length).trim();
  return text.includes('<think>') ? '' : text;
}

const TAGS = ['<think>', '</think>', '<answer>', '</answer>'];

/**
 * Streams deltas into reasoning and content. Text inside <think>...</think> is reasoning; after
 * it, content with the <answer> tags removed. A trailing fragment that could begin a tag is held
 * back until the next delta decides it.
 */
export class ReasoningSplitter {
  private inThink: boolean;
  private buffer = '';

  constructor(startsInThink: boolean) {
    this.inThink = startsInThink;
  }

  push(delta: string): { reasoning: string; content: string } {
    this.buffer += delta;
    return this.drain(false);
  }

  flush(): { reasoning: string; content: string } {
    return this.drain(true);
  }

  private drain(final: boolean): { reasoning: string; content: string } {
    let reasoning = '';
    let content = '';
    const emit = (text: string) => {
      if (this.inThink) reasoning += text;
      else content += text;
    };
    for (;;) {
      const lt = this.buffer.indexOf('<');
      if (lt < 0) {
        emit(this.buffer);
        this.buffer = '';
        break;
      }
      emit(this.buffer.slice(0, lt));
      this.buffer = this.buffer.slice(lt);
      const tag = TAGS.find((t) => this.buffer.startsWith(t));
      if (tag) {
        this.buffer = this.buffer.slice(tag.length);
        if (tag === '<think>') this.inThink = true;
        else if (tag === '</think>') this.inThink = false;
        // answer tags are dropped from the content
        continue;
      }
      if (!final && TAGS.some((t) => t.startsWith(this.buffer))) break; // maybe the start of a tag
      emit('<');
      this.buffer = this.buffer.slice(1);
    }
    return { reasoning, content };
  }
}
