// Completions shown as the paper reads them: the think block, the answer block and the tags set
// apart, and self-reflection words marked. The reflection pattern is the service's own shared
// rule (src/engine/rewards.ts, served as /dashboard/rules.json), not a copy.
import { getJson } from './api.js';
import { el } from './dom.js';

let reflection = null;

export async function loadRules() {
  const rules = await getJson('/dashboard/rules.json');
  reflection = new RegExp(rules.reflection_pattern, rules.reflection_flags.includes('g') ? rules.reflection_flags : `${rules.reflection_flags}g`);
  return rules;
}

/** Text with the reflection words wrapped in <mark>; returns the nodes and the count. */
function markReflection(text) {
  if (!reflection) return { nodes: [document.createTextNode(text)], count: 0 };
  const nodes = [];
  let last = 0;
  let count = 0;
  reflection.lastIndex = 0;
  for (let m = reflection.exec(text); m; m = reflection.exec(text)) {
    if (m[0] === '') {
      reflection.lastIndex += 1;
      continue;
    }
    if (m.index > last) nodes.push(document.createTextNode(text.slice(last, m.index)));
    nodes.push(el('mark', { class: 'reflect', title: 'self-reflection word' }, m[0]));
    last = m.index + m[0].length;
    count += 1;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return { nodes, count };
}

const TAG = /<\/?(?:think|answer)>/g;

/**
 * A <div class="completion"> for `text`. With `opensThink` (template r1: the prompt ends with
 * "<think>") the completion starts inside the think block, as the format reward reads it.
 */
export function renderCompletion(text, { opensThink = false } = {}) {
  const box = el('div', { class: 'completion' });
  let state = opensThink ? 'think' : 'plain';
  let last = 0;
  let reflections = 0;
  const emit = (part) => {
    if (!part) return;
    const { nodes, count } = markReflection(part);
    reflections += count;
    box.append(el('span', { class: `seg seg-${state}` }, ...nodes));
  };
  TAG.lastIndex = 0;
  for (let m = TAG.exec(text); m; m = TAG.exec(text)) {
    emit(text.slice(last, m.index));
    box.append(el('span', { class: 'tag' }, m[0]));
    state = m[0] === '<think>' ? 'think' : m[0] === '<answer>' ? 'answer' : 'plain';
    last = m.index + m[0].length;
  }
  emit(text.slice(last));
  box.dataset.reflections = String(reflections);
  return box;
}

/** The think and answer text of a (partial) completion, for the Try-it panels. */
export function splitCompletion(text, { opensThink = false } = {}) {
  const full = opensThink ? `<think>${text}` : text;
  const think = /<think>([\s\S]*?)(?:<\/think>|$)/.exec(full);
  const answer = /<answer>([\s\S]*?)(?:<\/answer>|$)/.exec(full);
  return { think: think ? think[1].trim() : null, answer: answer ? answer[1].trim() : null };
}
