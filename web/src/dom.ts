// Building the page from plain DOM nodes. Text always goes in as text nodes, never as HTML, so
// nothing the API returns can become markup.

import { Problem } from "./api";

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | number | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
}

let ids = 0;
export function uid(prefix: string): string {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled input with a slot for its own error, announced with the field. */
export interface Field {
  row: HTMLDivElement;
  input: HTMLInputElement;
  error: HTMLParagraphElement;
  setError(message: string | null): void;
}

export function field(
  label: string,
  attrs: Attrs & { name: string },
  ...extra: Child[]
): Field {
  const id = uid(`f-${attrs.name}`);
  const errorId = `${id}-error`;
  const hints = extra.filter((x): x is HTMLElement => x instanceof HTMLElement && !!x.id);
  const describedBy = [errorId, ...hints.map((x) => x.id)].join(" ");
  const input = h("input", { id, "aria-describedby": describedBy, ...attrs });
  const error = h("p", { id: errorId, class: "field-error", hidden: true });
  const row = h("div", { class: "field" }, h("label", { for: id }, label), input, ...extra, error);
  return {
    row,
    input,
    error,
    setError(message) {
      if (message) {
        error.textContent = message;
        error.hidden = false;
        input.setAttribute("aria-invalid", "true");
      } else {
        error.textContent = "";
        error.hidden = true;
        input.removeAttribute("aria-invalid");
      }
    },
  };
}

/** The words a person reads for a field's message: "password: is too short" → "Password is too short". */
function sentence(label: string, message: string): string {
  return `${label} ${message}`.replace(/\s+/g, " ").trim().replace(/^./, (c) => c.toUpperCase());
}

/**
 * A form's status line and the errors of its fields. A problem's field errors go next to the
 * fields they name; whatever names no field on this form goes to the form's own alert.
 */
export class FormState {
  readonly alert = h("div", { class: "alert", role: "alert", hidden: true });
  readonly status = h("p", { class: "status", role: "status" });

  constructor(
    private readonly fields: Record<string, Field>,
    private readonly labels: Record<string, string> = {},
  ) {}

  clear(): void {
    this.alert.hidden = true;
    this.alert.textContent = "";
    this.status.textContent = "";
    for (const f of Object.values(this.fields)) f.setError(null);
  }

  done(message: string): void {
    this.clear();
    this.status.textContent = message;
  }

  fail(err: unknown): void {
    this.clear();
    const problem =
      err instanceof Problem
        ? err
        : new Problem(0, "Something went wrong", String(err), "client_error");
    const unplaced: string[] = [];
    let first: Field | null = null;
    for (const { field: name, message } of problem.errors) {
      const target = this.fields[name];
      const label = this.labels[name] ?? name.replace(/_/g, " ");
      if (target) {
        const text = sentence(label, message);
        target.setError(target.error.hidden ? text : `${target.error.textContent} ${text}`);
        first ??= target;
      } else {
        unplaced.push(sentence(label, message));
      }
    }
    if (problem.errors.length === 0 || unplaced.length > 0) {
      this.alert.hidden = false;
      this.alert.append(h("p", {}, problem.text));
      for (const line of unplaced) this.alert.append(h("p", {}, line));
      if (problem.requestId && problem.status >= 500) {
        this.alert.append(h("p", { class: "muted" }, `Reference: ${problem.requestId}`));
      }
    }
    // The first field with an error takes focus, so keyboard and screen-reader users land on it.
    first?.input.focus();
  }
}

/** Disables a form's buttons while its request runs, so a double click sends one request. */
export async function busy<T>(form: HTMLFormElement, work: () => Promise<T>): Promise<T> {
  const buttons = [...form.querySelectorAll("button")];
  for (const b of buttons) b.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    for (const b of buttons) b.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

export function formatDate(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
