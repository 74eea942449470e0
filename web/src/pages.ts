// The pages. Each one builds its content into a fresh <main> and says which title it has.

import * as api from "./api";
import type { Upload, User } from "./api";
import { FormState, busy, field, formatBytes, formatDate, h, uid } from "./dom";

export const APP_NAME = import.meta.env.VITE_APP_NAME || "backend";

export interface Page {
  title: string;
  render(main: HTMLElement, navigate: (path: string) => void): void | Promise<void>;
  /** Only for a signed-in person (`user`) or an administrator (`admin`). */
  access?: "user" | "admin";
}

const MIN_PASSWORD = 12;
const MAX_PASSWORD = 128;

const DEFAULT_TYPES = "image/jpeg,image/png,image/gif,image/webp,application/pdf,text/plain";
export const UPLOAD_TYPES = (import.meta.env.VITE_UPLOAD_CONTENT_TYPES || DEFAULT_TYPES)
  .split(",")
  .map((t) => t.trim())
  .filter(Boolean);
export const MAX_UPLOAD_BYTES = Number(import.meta.env.VITE_MAX_UPLOAD_BYTES || 10 * 1024 * 1024);

function heading(text: string): HTMLHeadingElement {
  return h("h1", { tabindex: -1 }, text);
}

function link(href: string, text: string): HTMLAnchorElement {
  return h("a", { href }, text);
}

// ---------------------------------------------------------------------------------------------
// Password rules, shown as the person types; the server stays the judge (its strength check
// has the final word and its message appears under the field).
// ---------------------------------------------------------------------------------------------

function passwordRules(
  input: HTMLInputElement,
  hints: () => string[],
): HTMLUListElement {
  const length = h("li", {});
  const personal = h("li", {});
  const strength = h(
    "li",
    { class: "rule-info" },
    "Hard to guess: a phrase of unrelated words works well. The server checks this when you submit.",
  );
  const list = h("ul", { id: uid("password-rules"), class: "rules" }, length, personal, strength);
  const mark = (li: HTMLLIElement, ok: boolean, text: string) => {
    li.className = ok ? "rule-ok" : "rule-todo";
    li.textContent = `${ok ? "✓" : "•"} ${text}${ok ? " (done)" : ""}`;
  };
  const update = () => {
    const value = input.value;
    const chars = [...value].length;
    mark(
      length,
      chars >= MIN_PASSWORD && chars <= MAX_PASSWORD,
      chars > MAX_PASSWORD
        ? `At most ${MAX_PASSWORD} characters (now ${chars})`
        : `At least ${MIN_PASSWORD} characters (now ${chars})`,
    );
    const lower = value.toLowerCase();
    // The email's local part and each word of the name and email (zxcvbn takes them as hints).
    const words = hints()
      .flatMap((hint) => [hint.split("@")[0] ?? "", ...hint.split(/[\s@._+-]+/)])
      .map((w) => w.trim().toLowerCase())
      .filter((w) => w.length >= 3 && !["com", "org", "net", "example"].includes(w));
    mark(personal, value.length > 0 && !words.some((w) => lower.includes(w)), "Not your email or name");
  };
  input.addEventListener("input", update);
  update();
  return list;
}

// ---------------------------------------------------------------------------------------------
// Home
// ---------------------------------------------------------------------------------------------

export const home: Page = {
  title: "Home",
  render(main) {
    const me = api.user();
    main.append(heading(APP_NAME));
    if (me) {
      main.append(
        h("p", {}, `Signed in as ${me.name} (${me.email}).`),
        h(
          "ul",
          { class: "cards" },
          h("li", {}, link("/uploads", "Your files"), " — upload, download and delete files."),
          h("li", {}, link("/profile", "Your profile"), " — name, email, password, sessions."),
          me.role === "admin" ? h("li", {}, link("/admin/users", "Users"), " — every account.") : null,
          h("li", {}, link("/status", "Service status")),
        ),
      );
    } else {
      main.append(
        h("p", {}, "Keep your files in one place, from any device."),
        h(
          "p",
          { class: "actions" },
          h("a", { href: "/signup", class: "button" }, "Create an account"),
          h("a", { href: "/login", class: "button secondary" }, "Log in"),
        ),
      );
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Sign up and log in
// ---------------------------------------------------------------------------------------------

export const signup: Page = {
  title: "Create an account",
  render(main, navigate) {
    const name = field("Name", { name: "name", autocomplete: "name", required: true, maxlength: 200 });
    const email = field("Email", { name: "email", type: "email", autocomplete: "email", required: true });
    const password = field("Password", {
      name: "password",
      type: "password",
      autocomplete: "new-password",
      required: true,
    });
    const rules = passwordRules(password.input, () => [email.input.value, name.input.value]);
    password.input.setAttribute("aria-describedby", `${password.error.id} ${rules.id}`);
    password.row.insertBefore(rules, password.error);
    const state = new FormState({ name, email, password });
    const form = h(
      "form",
      { novalidate: true },
      state.alert,
      name.row,
      email.row,
      password.row,
      h("button", { type: "submit" }, "Create account"),
      state.status,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(form, async () => {
        state.clear();
        try {
          await api.register(email.input.value.trim(), password.input.value, name.input.value.trim());
          navigate(nextPath());
        } catch (err) {
          state.fail(err);
        }
      });
    });
    main.append(
      heading("Create an account"),
      form,
      h("p", {}, "Already have an account? ", link("/login", "Log in")),
    );
  },
};

function nextPath(): string {
  const next = new URLSearchParams(location.search).get("next") ?? "/";
  // Only a path of this site: never a redirect elsewhere.
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

/** What the login page says once, after the session ended on purpose (a password change). */
let loginNotice: string | null = null;

export const login: Page = {
  title: "Log in",
  render(main, navigate) {
    const email = field("Email", { name: "email", type: "email", autocomplete: "username", required: true });
    const password = field("Password", {
      name: "password",
      type: "password",
      autocomplete: "current-password",
      required: true,
    });
    const state = new FormState({ email, password });
    const form = h(
      "form",
      { novalidate: true },
      state.alert,
      email.row,
      password.row,
      h("button", { type: "submit" }, "Log in"),
      state.status,
    );
    if (loginNotice) {
      state.done(loginNotice);
      loginNotice = null;
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(form, async () => {
        state.clear();
        try {
          await api.login(email.input.value.trim(), password.input.value);
          navigate(nextPath());
        } catch (err) {
          state.fail(err);
        }
      });
    });
    main.append(
      heading("Log in"),
      form,
      h("p", {}, "New here? ", link("/signup", "Create an account")),
    );
  },
};

// ---------------------------------------------------------------------------------------------
// Profile: name and email, password, sessions, deletion
// ---------------------------------------------------------------------------------------------

export const profile: Page = {
  title: "Your profile",
  access: "user",
  async render(main, navigate) {
    main.append(heading("Your profile"));
    let me: User;
    try {
      me = await api.me();
    } catch (err) {
      const state = new FormState({});
      state.fail(err);
      main.append(state.alert);
      return;
    }

    // Name and email
    const name = field("Name", { name: "name", autocomplete: "name", required: true, value: me.name });
    const email = field("Email", { name: "email", type: "email", autocomplete: "email", required: true, value: me.email });
    const emailHint = h("p", { id: uid("hint"), class: "hint" }, "Needed only to change your email.");
    const current = field(
      "Current password",
      { name: "current_password", type: "password", autocomplete: "current-password" },
      emailHint,
    );
    const details = new FormState({ name, email, current_password: current }, { current_password: "Current password" });
    const detailsForm = h(
      "form",
      { novalidate: true, "aria-labelledby": "details-heading" },
      h("h2", { id: "details-heading" }, "Details"),
      details.alert,
      name.row,
      email.row,
      current.row,
      h("button", { type: "submit" }, "Save changes"),
      details.status,
    );
    detailsForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(detailsForm, async () => {
        details.clear();
        const changes: { name?: string; email?: string; current_password?: string } = {};
        const newName = name.input.value.trim();
        const newEmail = email.input.value.trim();
        if (newName !== me.name) changes.name = newName;
        if (newEmail.toLowerCase() !== me.email.toLowerCase()) {
          changes.email = newEmail;
          changes.current_password = current.input.value;
        }
        if (Object.keys(changes).length === 0) {
          details.done("Nothing to save.");
          return;
        }
        try {
          me = await api.updateMe(changes);
          name.input.value = me.name;
          email.input.value = me.email;
          current.input.value = "";
          details.done("Your changes are saved.");
        } catch (err) {
          details.fail(err);
        }
      });
    });

    // Password
    const oldPassword = field("Current password", {
      name: "current_password",
      type: "password",
      autocomplete: "current-password",
      required: true,
    });
    const newPassword = field("New password", {
      name: "new_password",
      type: "password",
      autocomplete: "new-password",
      required: true,
    });
    const rules = passwordRules(newPassword.input, () => [me.email, me.name]);
    newPassword.input.setAttribute("aria-describedby", `${newPassword.error.id} ${rules.id}`);
    newPassword.row.insertBefore(rules, newPassword.error);
    const pw = new FormState(
      { current_password: oldPassword, new_password: newPassword },
      { current_password: "Current password", new_password: "New password" },
    );
    const passwordForm = h(
      "form",
      { novalidate: true, "aria-labelledby": "password-heading" },
      h("h2", { id: "password-heading" }, "Password"),
      h("p", { class: "hint" }, "Changing it signs you out on every device, this one included."),
      pw.alert,
      oldPassword.row,
      newPassword.row,
      h("button", { type: "submit" }, "Change password"),
      pw.status,
    );
    passwordForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(passwordForm, async () => {
        pw.clear();
        try {
          await api.changePassword(oldPassword.input.value, newPassword.input.value);
          loginNotice = "Your password is changed. Log in with the new one.";
          navigate("/login");
        } catch (err) {
          pw.fail(err);
        }
      });
    });

    // Sessions
    const sessions = new FormState({});
    const sessionsForm = h(
      "form",
      { "aria-labelledby": "sessions-heading" },
      h("h2", { id: "sessions-heading" }, "Sessions"),
      h("p", { class: "hint" }, "Signs you out on every device and browser, this one included."),
      sessions.alert,
      h("button", { type: "submit", class: "secondary" }, "Log out everywhere"),
    );
    sessionsForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(sessionsForm, async () => {
        try {
          await api.logout(true);
          navigate("/login");
        } catch (err) {
          sessions.fail(err);
        }
      });
    });

    // Deletion
    const confirmPassword = field("Current password", {
      name: "current_password",
      type: "password",
      autocomplete: "current-password",
      required: true,
    });
    const del = new FormState({ current_password: confirmPassword }, { current_password: "Current password" });
    const deleteForm = h(
      "form",
      { novalidate: true, "aria-labelledby": "delete-heading", class: "danger-zone" },
      h("h2", { id: "delete-heading" }, "Delete your account"),
      h("p", { class: "hint" }, "Your account and every file you uploaded are removed. This cannot be undone."),
      del.alert,
      confirmPassword.row,
      h("button", { type: "submit", class: "danger" }, "Delete my account"),
    );
    deleteForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(deleteForm, async () => {
        del.clear();
        try {
          await api.deleteAccount(confirmPassword.input.value);
          navigate("/");
        } catch (err) {
          del.fail(err);
        }
      });
    });

    main.append(
      h("p", { class: "muted" }, `Role: ${me.role}. Member since ${formatDate(me.created_at)}.`),
      detailsForm,
      passwordForm,
      sessionsForm,
      deleteForm,
    );
  },
};

// ---------------------------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------------------------

function typeNames(types: string[]): string {
  return types.join(", ");
}

export const uploads: Page = {
  title: "Your files",
  access: "user",
  render(main) {
    main.append(heading("Your files"));

    const allowed = h(
      "p",
      { id: uid("hint"), class: "hint" },
      `Allowed types: ${typeNames(UPLOAD_TYPES)}. Up to ${formatBytes(MAX_UPLOAD_BYTES)}.`,
    );
    const file = field("File", { name: "file", type: "file", accept: UPLOAD_TYPES.join(","), required: true }, allowed);
    const progress = h("progress", { max: 1, value: 0, id: uid("progress"), "aria-label": "Upload progress", hidden: true });
    const state = new FormState(
      { filename: file, content_type: file, size: file, file },
      { filename: "File name", content_type: "File type", size: "File size" },
    );
    const form = h(
      "form",
      { novalidate: true, "aria-labelledby": "upload-heading" },
      h("h2", { id: "upload-heading" }, "Upload a file"),
      state.alert,
      file.row,
      progress,
      h("button", { type: "submit" }, "Upload"),
      state.status,
    );

    const list = h("ul", { class: "files", "aria-live": "polite" });
    const listState = new FormState({});
    const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more");
    let cursor: string | null = null;

    const row = (upload: Upload): HTMLLIElement => {
      const status = upload.status === "ready" ? "" : " — not finished";
      const download = h("button", { type: "button", class: "secondary" }, "Download");
      download.setAttribute("aria-label", `Download ${upload.filename}`);
      const remove = h("button", { type: "button", class: "danger" }, "Delete");
      remove.setAttribute("aria-label", `Delete ${upload.filename}`);
      const li = h(
        "li",
        { "data-upload-id": upload.id },
        h(
          "div",
          { class: "file-info" },
          h("strong", {}, upload.filename),
          h("span", { class: "muted" }, ` ${formatBytes(upload.size)} · ${upload.content_type} · ${formatDate(upload.created_at)}${status}`),
        ),
        h("div", { class: "file-actions" }, upload.status === "ready" ? download : null, remove),
      );
      download.addEventListener("click", async () => {
        listState.clear();
        try {
          download.disabled = true;
          const blob = await api.downloadFile(upload.id);
          // Saved under its own name from this page's origin, so the page stays where it is.
          const href = URL.createObjectURL(blob);
          const a = h("a", { href, download: upload.filename, hidden: true });
          document.body.append(a);
          a.click();
          a.remove();
          window.setTimeout(() => URL.revokeObjectURL(href), 60_000);
          listState.done(`${upload.filename} is downloaded.`);
        } catch (err) {
          listState.fail(err);
        } finally {
          download.disabled = false;
        }
      });
      remove.addEventListener("click", async () => {
        if (!window.confirm(`Delete ${upload.filename}? This cannot be undone.`)) return;
        listState.clear();
        try {
          await api.deleteUpload(upload.id);
          li.remove();
          listState.done(`${upload.filename} was deleted.`);
          if (!list.children.length) list.append(empty());
          heading_focus(main);
        } catch (err) {
          listState.fail(err);
        }
      });
      return li;
    };
    const empty = () => h("li", { class: "muted empty" }, "No files yet.");

    const load = async (reset: boolean) => {
      if (reset) cursor = null;
      try {
        const page = await api.listUploads(cursor);
        if (reset) list.replaceChildren();
        list.querySelector(".empty")?.remove();
        for (const upload of page.items) list.append(row(upload));
        if (!list.children.length) list.append(empty());
        cursor = page.next_cursor;
        more.hidden = !cursor;
      } catch (err) {
        listState.fail(err);
      }
    };
    more.addEventListener("click", () => void load(false));

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(form, async () => {
        state.clear();
        const chosen = file.input.files?.[0];
        if (!chosen) {
          file.setError("Choose a file to upload.");
          file.input.focus();
          return;
        }
        progress.hidden = false;
        progress.value = 0;
        try {
          const done = await api.uploadFile(chosen, (fraction) => {
            progress.value = fraction;
          });
          state.done(`${done.filename} is uploaded.`);
          file.input.value = "";
          await load(true);
        } catch (err) {
          state.fail(err);
        } finally {
          progress.hidden = true;
        }
      });
    });

    main.append(
      form,
      h("h2", {}, "Files"),
      listState.alert,
      listState.status,
      list,
      more,
    );
    void load(true);
  },
};

function heading_focus(main: HTMLElement): void {
  main.querySelector<HTMLElement>("h1")?.focus();
}

// ---------------------------------------------------------------------------------------------
// Admin: every user, filtered by email prefix, a page at a time
// ---------------------------------------------------------------------------------------------

export const adminUsers: Page = {
  title: "Users",
  access: "admin",
  render(main) {
    main.append(heading("Users"));
    const email = field("Email starts with", { name: "email", type: "search", autocomplete: "off" });
    const state = new FormState({ email });
    const form = h(
      "form",
      { role: "search", novalidate: true, class: "inline" },
      email.row,
      h("button", { type: "submit" }, "Filter"),
    );
    const caption = h("caption", {}, "Users");
    const body = h("tbody", {});
    const table = h(
      "table",
      {},
      caption,
      h(
        "thead",
        {},
        h("tr", {}, h("th", { scope: "col" }, "Email"), h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Role"), h("th", { scope: "col" }, "Created")),
      ),
      body,
    );
    const scroller = h("div", { class: "table-scroll", tabindex: 0, role: "region", "aria-label": "Users table" }, table);
    const first = h("button", { type: "button", class: "secondary" }, "First page");
    const next = h("button", { type: "button" }, "Next page");
    const pager = h("nav", { class: "pager", "aria-label": "Pages of users" }, first, next);
    let cursor: string | null = null;
    let pageNo = 1;

    const load = async (from: string | null) => {
      state.clear();
      try {
        const page = await api.listUsers(email.input.value.trim(), from);
        body.replaceChildren(
          ...page.items.map((u) =>
            h("tr", {}, h("td", {}, u.email), h("td", {}, u.name), h("td", {}, u.role), h("td", {}, formatDate(u.created_at))),
          ),
        );
        if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: 4 }, "No users match.")));
        cursor = page.next_cursor;
        next.disabled = !cursor;
        first.disabled = pageNo === 1;
        caption.textContent = `Users, page ${pageNo}`;
        state.status.textContent = `Page ${pageNo}: ${page.items.length} users.`;
      } catch (err) {
        state.fail(err);
      }
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      pageNo = 1;
      void load(null);
    });
    next.addEventListener("click", () => {
      if (!cursor) return;
      pageNo += 1;
      void load(cursor);
    });
    first.addEventListener("click", () => {
      pageNo = 1;
      void load(null);
    });
    main.append(form, state.alert, state.status, scroller, pager);
    void load(null);
  },
};

// ---------------------------------------------------------------------------------------------
// Status: what /health says
// ---------------------------------------------------------------------------------------------

export const status: Page = {
  title: "Service status",
  render(main) {
    main.append(heading("Service status"));
    const state = new FormState({});
    const summary = h("p", { class: "status-summary", role: "status" }, "Checking…");
    const checks = h("dl", { class: "checks" });
    const again = h("button", { type: "button", class: "secondary" }, "Check again");
    const load = async () => {
      state.clear();
      summary.textContent = "Checking…";
      try {
        const { body } = await api.health();
        const ok = body.status === "ok";
        summary.className = `status-summary ${ok ? "ok" : "bad"}`;
        summary.textContent = ok
          ? "All systems are working."
          : "Some parts of the service are not working right now.";
        checks.replaceChildren(
          ...Object.entries(body.checks).flatMap(([name, value]) => [
            h("dt", {}, name.charAt(0).toUpperCase() + name.slice(1)),
            h("dd", { class: value === "ok" ? "ok" : "bad" }, value === "ok" ? "Working" : "Not working"),
          ]),
          h("dt", {}, "Up for"),
          h("dd", {}, `${Math.round(body.uptime)} seconds`),
          h("dt", {}, "Checked at"),
          h("dd", {}, formatDate(body.timestamp)),
        );
      } catch (err) {
        summary.textContent = "";
        state.fail(err);
      }
    };
    again.addEventListener("click", () => void load());
    main.append(state.alert, summary, checks, again);
    void load();
  },
};

export const notFound: Page = {
  title: "Page not found",
  render(main) {
    main.append(heading("Page not found"), h("p", {}, "There is nothing at this address. ", link("/", "Go home")));
  },
};

export const forbidden: Page = {
  title: "Not allowed",
  render(main) {
    main.append(
      heading("Not allowed"),
      h("p", {}, "This page is for administrators. ", link("/", "Go home")),
    );
  },
};
