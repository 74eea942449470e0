// The client's shell: the header and navigation, client-side routes, and focus on each change
// of page so that keyboard and screen-reader users start at its heading.

import "./style.css";
import * as api from "./api";
import { h } from "./dom";
import * as pages from "./pages";
import type { Page } from "./pages";

const routes: Record<string, Page> = {
  "/": pages.home,
  "/signup": pages.signup,
  "/login": pages.login,
  "/profile": pages.profile,
  "/uploads": pages.uploads,
  "/admin/users": pages.adminUsers,
  "/status": pages.status,
};

const nav = h("ul", { class: "nav-links" });
const header = h(
  "header",
  { class: "site-header" },
  h("a", { href: "#main", class: "skip-link" }, "Skip to content"),
  h("a", { href: "/", class: "brand" }, pages.APP_NAME),
  h("nav", { "aria-label": "Main" }, nav),
);
let main = h("main", { id: "main", tabindex: -1 });
const footer = h("footer", { class: "site-footer" }, h("a", { href: "/status" }, "Service status"));

function navLink(href: string, text: string): HTMLLIElement {
  const a = h("a", { href }, text);
  if (location.pathname === href) a.setAttribute("aria-current", "page");
  return h("li", {}, a);
}

function renderNav(): void {
  const me = api.user();
  const items: HTMLLIElement[] = [];
  if (me) {
    items.push(navLink("/uploads", "Files"), navLink("/profile", "Profile"));
    if (me.role === "admin") items.push(navLink("/admin/users", "Users"));
    const out = h("button", { type: "button", class: "link-button" }, "Log out");
    out.addEventListener("click", async () => {
      out.disabled = true;
      try {
        await api.logout();
      } catch {
        // The client has forgotten the session either way.
      }
      navigate("/login");
    });
    items.push(h("li", {}, out));
  } else {
    items.push(navLink("/login", "Log in"), navLink("/signup", "Sign up"));
  }
  nav.replaceChildren(...items);
}

let firstRender = true;

async function render(): Promise<void> {
  const path = location.pathname.replace(/\/+$/, "") || "/";
  let page = routes[path] ?? pages.notFound;
  const me = api.user();
  if (page.access && !me) {
    history.replaceState(null, "", `/login?next=${encodeURIComponent(path)}`);
    page = pages.login;
  } else if (page.access === "admin" && me?.role !== "admin") {
    page = pages.forbidden;
  } else if ((page === pages.login || page === pages.signup) && me) {
    history.replaceState(null, "", "/");
    page = pages.home;
  }
  document.title = `${page.title} · ${pages.APP_NAME}`;
  renderNav();
  const fresh = h("main", { id: "main", tabindex: -1 });
  main.replaceWith(fresh);
  main = fresh;
  const done = page.render(fresh, navigate);
  if (!firstRender) fresh.querySelector<HTMLElement>("h1")?.focus();
  firstRender = false;
  await done;
}

export function navigate(path: string): void {
  if (path !== location.pathname + location.search) history.pushState(null, "", path);
  void render();
}

// Links inside the site change the page without a reload.
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = (event.target as Element).closest?.("a");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener("popstate", () => void render());

// A session that ends elsewhere (expired, logged out in another tab) redraws the navigation.
api.onSessionChange(() => renderNav());

async function start(): Promise<void> {
  const root = document.getElementById("app") ?? document.body;
  root.replaceChildren(header, main, footer);
  await api.restore();
  await render();
  document.body.dataset.ready = "true";
}

void start();
