// The API as the client sees it: requests with the access token, problem+json errors, and the
// session. The access token lives in this module's memory only; the refresh token travels only
// as the HttpOnly cookie the server sets, so no script can read either from storage.

export const API_URL = (import.meta.env.VITE_API_URL ?? "").replace(/\/$/, "");

export interface User {
  id: string;
  email: string;
  name: string;
  role: string;
  created_at: string;
  updated_at: string;
}

export interface Upload {
  id: string;
  filename: string;
  content_type: string;
  size: number;
  status: "pending" | "ready";
  created_at: string;
  download_url?: string;
  download_expires_at?: string;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface CreatedUpload {
  id: string;
  upload_url: string;
  method: string;
  headers: Record<string, string>;
  expires_at: string;
}

export interface Health {
  status: string;
  timestamp: string;
  uptime: number;
  checks: Record<string, string>;
}

interface TokenResponse {
  access_token: string;
  expires_in: number;
  user: User;
}

export interface FieldProblem {
  field: string;
  message: string;
}

/** An RFC 9457 problem, or a failure to reach the API at all (status 0). */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly code: string,
    readonly errors: FieldProblem[] = [],
    readonly requestId = "",
  ) {
    super(detail || title);
  }

  /** What the person reads: the detail, else the title. */
  get text(): string {
    return this.detail || this.title;
  }
}

async function problemFrom(res: Response): Promise<Problem> {
  const requestId = res.headers.get("x-request-id") ?? "";
  try {
    const body = await res.json();
    return new Problem(
      res.status,
      String(body.title ?? res.statusText),
      String(body.detail ?? ""),
      String(body.code ?? ""),
      Array.isArray(body.errors) ? body.errors : [],
      String(body.request_id ?? requestId),
    );
  } catch {
    return new Problem(res.status, res.statusText || "Request failed", "", "", [], requestId);
  }
}

function unreachable(): Problem {
  return new Problem(
    0,
    "The service cannot be reached",
    "Check your connection and try again.",
    "network_error",
  );
}

// ---------------------------------------------------------------------------------------------
// The session
// ---------------------------------------------------------------------------------------------

/** Renew this long before the access token expires, so a request never carries a dead one. */
const RENEW_AHEAD_SECONDS = 60;
/** A hint (not a secret) that a refresh cookie may exist, so anonymous visits skip the call. */
const SESSION_HINT = "session";

let accessToken: string | null = null;
let currentUser: User | null = null;
let renewTimer: number | undefined;
const listeners = new Set<(user: User | null) => void>();

export function user(): User | null {
  return currentUser;
}

export function onSessionChange(listener: (user: User | null) => void): void {
  listeners.add(listener);
}

function setSession(tokens: TokenResponse | null): void {
  window.clearTimeout(renewTimer);
  if (tokens) {
    accessToken = tokens.access_token;
    currentUser = tokens.user;
    localStorage.setItem(SESSION_HINT, "1");
    const wait = Math.max(tokens.expires_in - RENEW_AHEAD_SECONDS, 5) * 1000;
    renewTimer = window.setTimeout(() => void renew(), wait);
  } else {
    accessToken = null;
    currentUser = null;
    localStorage.removeItem(SESSION_HINT);
  }
  for (const listener of listeners) listener(currentUser);
}

function setUser(user: User): void {
  currentUser = user;
  for (const listener of listeners) listener(currentUser);
}

let renewing: Promise<boolean> | null = null;

/**
 * Trades the refresh cookie for a new access token. Refresh tokens are single use: two tabs
 * presenting the same one would look like a stolen token and end the session, so renewals are
 * serialized across tabs with a Web Lock (each one then sends the cookie the previous one set).
 */
export function renew(): Promise<boolean> {
  renewing ??= (async () => {
    const attempt = async () => {
      let res: Response;
      try {
        res = await fetch(`${API_URL}/api/v1/auth/refresh`, {
          method: "POST",
          credentials: "include",
        });
      } catch {
        return false;
      }
      if (res.ok) {
        setSession((await res.json()) as TokenResponse);
        return true;
      }
      if (res.status === 401 || res.status === 403) setSession(null);
      return false;
    };
    try {
      return navigator.locks
        ? await navigator.locks.request("session-renewal", attempt)
        : await attempt();
    } finally {
      renewing = null;
    }
  })();
  return renewing;
}

/** At start: picks up the session of an earlier visit (after a reload, or in a new tab). */
export async function restore(): Promise<void> {
  if (localStorage.getItem(SESSION_HINT)) await renew();
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

interface Options {
  method?: string;
  body?: unknown;
  /** Send the access token (and renew it once when the API says it has expired). */
  auth?: boolean;
}

async function send(path: string, options: Options): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.auth && accessToken) headers.Authorization = `Bearer ${accessToken}`;
  try {
    return await fetch(`${API_URL}${path}`, {
      method: options.method ?? "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: "include",
    });
  } catch {
    throw unreachable();
  }
}

/** Calls the API; resolves with the parsed body (undefined for 204), rejects with a Problem. */
export async function request<T>(path: string, options: Options = {}): Promise<T> {
  let res = await send(path, options);
  if (res.status === 401 && options.auth && (await renew())) {
    res = await send(path, options);
  }
  if (res.status === 401 && options.auth) setSession(null);
  if (!res.ok) throw await problemFrom(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

// ---------------------------------------------------------------------------------------------
// The routes the client uses
// ---------------------------------------------------------------------------------------------

export async function register(email: string, password: string, name: string): Promise<void> {
  setSession(
    await request<TokenResponse>("/api/v1/auth/register", {
      method: "POST",
      body: { email, password, name },
    }),
  );
}

export async function login(email: string, password: string): Promise<void> {
  setSession(
    await request<TokenResponse>("/api/v1/auth/login", {
      method: "POST",
      body: { email, password },
    }),
  );
}

/** Ends this session (or every session of the user); the client forgets it whatever happens. */
export async function logout(everywhere = false): Promise<void> {
  try {
    await request<void>(everywhere ? "/api/v1/auth/logout-all" : "/api/v1/auth/logout", {
      method: "POST",
      auth: true,
    });
  } finally {
    setSession(null);
  }
}

export async function me(): Promise<User> {
  const fresh = await request<User>("/api/v1/users/me", { auth: true });
  setUser(fresh);
  return fresh;
}

export async function updateMe(changes: {
  name?: string;
  email?: string;
  current_password?: string;
}): Promise<User> {
  const fresh = await request<User>("/api/v1/users/me", {
    method: "PATCH",
    body: changes,
    auth: true,
  });
  setUser(fresh);
  return fresh;
}

/** Ends every session, this one included: the user logs in again with the new password. */
export async function changePassword(current_password: string, new_password: string): Promise<void> {
  await request<void>("/api/v1/users/me/password", {
    method: "PUT",
    body: { current_password, new_password },
    auth: true,
  });
  setSession(null);
}

export async function deleteAccount(current_password: string): Promise<void> {
  await request<void>("/api/v1/users/me", {
    method: "DELETE",
    body: { current_password },
    auth: true,
  });
  setSession(null);
}

export function listUsers(email: string, cursor: string | null, limit = 10): Promise<Page<User>> {
  const query = new URLSearchParams({ limit: String(limit) });
  if (email) query.set("email", email);
  if (cursor) query.set("cursor", cursor);
  return request<Page<User>>(`/api/v1/users?${query}`, { auth: true });
}

export function listUploads(cursor: string | null, limit = 20): Promise<Page<Upload>> {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set("cursor", cursor);
  return request<Page<Upload>>(`/api/v1/uploads?${query}`, { auth: true });
}

export function getUpload(id: string): Promise<Upload> {
  return request<Upload>(`/api/v1/uploads/${encodeURIComponent(id)}`, { auth: true });
}

/**
 * The file's bytes, read from its short-lived presigned URL (the bucket allows the site's origin
 * to read through CORS).
 */
export async function downloadFile(id: string): Promise<Blob> {
  const upload = await getUpload(id);
  if (!upload.download_url) {
    throw new Problem(409, "Not ready", "This file has not finished uploading.", "not_ready");
  }
  let res: Response;
  try {
    res = await fetch(upload.download_url);
  } catch {
    throw unreachable();
  }
  if (!res.ok) {
    throw new Problem(
      res.status,
      "The file could not be read",
      `The storage service answered ${res.status}. Try again.`,
      "download_failed",
    );
  }
  return res.blob();
}

export async function deleteUpload(id: string): Promise<void> {
  try {
    await request<void>(`/api/v1/uploads/${encodeURIComponent(id)}`, {
      method: "DELETE",
      auth: true,
    });
  } catch (err) {
    // Already gone (deleted in another tab or on another device): what was asked is done.
    if (err instanceof Problem && err.status === 404) return;
    throw err;
  }
}

/** Headers a browser sets itself and refuses to take from a script. */
const BROWSER_HEADERS = new Set(["content-length", "host", "connection"]);

/**
 * Uploads a file: declares it, PUTs it straight to the presigned URL (reporting progress), then
 * asks the API to check and complete it.
 */
export async function uploadFile(file: File, onProgress: (fraction: number) => void): Promise<Upload> {
  const created = await request<CreatedUpload>("/api/v1/uploads", {
    method: "POST",
    body: { filename: file.name, content_type: file.type, size: file.size },
    auth: true,
  });
  await new Promise<void>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(created.method || "PUT", created.upload_url);
    for (const [name, value] of Object.entries(created.headers)) {
      if (!BROWSER_HEADERS.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
      } else {
        reject(
          new Problem(
            xhr.status,
            "The file could not be stored",
            `The storage service answered ${xhr.status}. Try again.`,
            "upload_failed",
          ),
        );
      }
    };
    xhr.onerror = () => reject(unreachable());
    xhr.send(file);
  });
  return request<Upload>(`/api/v1/uploads/${encodeURIComponent(created.id)}/complete`, {
    method: "POST",
    auth: true,
  });
}

/** `/health` answers 503 with the same body when a dependency is down: both are a reading. */
export async function health(): Promise<{ httpStatus: number; body: Health }> {
  let res: Response;
  try {
    res = await fetch(`${API_URL}/health`, { headers: { Accept: "application/json" } });
  } catch {
    throw unreachable();
  }
  if (res.status !== 200 && res.status !== 503) throw await problemFrom(res);
  return { httpStatus: res.status, body: (await res.json()) as Health };
}
