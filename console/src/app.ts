// The flyteauth console: who is signed in (IdentityService.UserInfo), the caller's roles per
// project (`/me`'s `roles`, when bindings are configured), the projects
// (AdminService.ListProjects / RegisterProject) over gRPC-web, and logout.
//
// Authentication is the server-side session cookie (HttpOnly, sent by the browser); every
// call also carries the CSRF double-submit header `x-csrf-token`, copied from the readable
// `flyte_csrf` cookie. Messages are encoded by @bufbuild/protobuf from code generated out of
// the repository's protos (src/gen/), never by hand. Text from the server is only ever
// written with textContent.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { Project } from "./gen/flyteidl/admin/project_pb";
import { AdminService } from "./gen/flyteidl/service/admin_pb";
import { IdentityService, type UserInfoResponse } from "./gen/flyteidl/service/identity_pb";

const CSRF_COOKIE = "flyte_csrf";
const CSRF_HEADER = "x-csrf-token";
const SIGN_IN_URL = "/login?redirect_url=/console";
const LOGOUT_URL = "/logout?redirect_url=/console";
const PAGE_SIZE = 100;
const CALL_TIMEOUT_MS = 15_000;

/** The value of a cookie the page may read, or undefined. */
function readCookie(name: string): string | undefined {
  for (const part of document.cookie.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}

/** The session's CSRF token: `__Host-flyte_csrf` when served over TLS, else `flyte_csrf`. */
function csrfToken(): string | undefined {
  return readCookie(`__Host-${CSRF_COOKIE}`) ?? readCookie(CSRF_COOKIE);
}

/** Adds the CSRF header, read fresh on every call (a new login replaces the cookie). */
const csrfHeader: Interceptor = (next) => async (req) => {
  const token = csrfToken();
  if (token) {
    req.header.set(CSRF_HEADER, token);
  }
  return next(req);
};

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  fetch: (input, init) => globalThis.fetch(input, { ...init, credentials: "include" }),
  interceptors: [csrfHeader],
  defaultTimeoutMs: CALL_TIMEOUT_MS,
});
const identity = createClient(IdentityService, transport);
const admin = createClient(AdminService, transport);

/** One of the caller's roles, as `/me` lists them when bindings are configured. */
interface RoleGrant {
  role: string;
  actions: string[];
  projects: string[];
  domains: string[];
}

/**
 * The caller's roles from `/me` (a safe GET: the session cookie suffices), or undefined when
 * the server has no bindings (every signed-in user may do everything, Flyte's blanket rule).
 */
async function fetchRoles(): Promise<RoleGrant[] | undefined> {
  const res = await fetch("/me", { credentials: "include", headers: { accept: "application/json" } });
  if (!res.ok) return undefined;
  const me = (await res.json()) as { roles?: RoleGrant[] };
  return Array.isArray(me.roles) ? me.roles : undefined;
}

const REGISTER_ACTION = "ADMINISTER_PROJECT";

// --------------------------------------------------------------------------- DOM helpers

type Attrs = Record<string, string | boolean | undefined>;

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === true) el.setAttribute(k, "");
    else if (typeof v === "string") el.setAttribute(k, v);
  }
  el.append(...children);
  return el;
}

const app = document.getElementById("app") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;

function setState(state: "signed-out" | "signed-in" | "error"): void {
  app.dataset.state = state;
}

function describe(err: unknown): string {
  if (err instanceof ConnectError) {
    return `${Code[err.code] ?? err.code}: ${err.rawMessage || "(no message)"}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function isUnauthenticated(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.Unauthenticated;
}

// --------------------------------------------------------------------------- views

function showSignIn(): void {
  nav.replaceChildren();
  app.replaceChildren(
    h("p", {}, h("a", { id: "sign-in", href: SIGN_IN_URL }, "Sign in")),
  );
  setState("signed-out");
}

function showFatal(err: unknown): void {
  nav.replaceChildren();
  app.replaceChildren(
    h("p", { id: "error", role: "alert" }, describe(err)),
    h("p", {}, h("a", { id: "sign-in", href: SIGN_IN_URL }, "Sign in")),
  );
  setState("error");
}

function projectItem(p: Project): HTMLLIElement {
  const li = h("li", { "data-project-id": p.id }, h("span", { class: "id" }, p.id));
  if (p.name && p.name !== p.id) li.append(" — ", h("span", { class: "name" }, p.name));
  if (p.description) li.append(" ", h("span", { class: "muted" }, `(${p.description})`));
  return li;
}

function showSignedIn(user: UserInfoResponse): void {
  const displayName = user.name || user.preferredUsername || user.subject;
  nav.replaceChildren(h("a", { id: "logout", href: LOGOUT_URL }, "Log out"));

  const error = h("p", { id: "error", role: "alert", hidden: true });
  const list = h("ul", { id: "projects", "aria-label": "Projects" });
  const empty = h("p", { class: "muted", hidden: true }, "No projects yet.");

  const field = (id: string, label: string, required: boolean) => [
    h("label", { for: id }, label),
    h("input", { id, name: id, required, autocomplete: "off" }),
  ];
  const submit = h("button", { type: "submit" }, "Register project");
  const form = h(
    "form",
    { id: "register-form" },
    ...field("project-id", "Project id", true),
    ...field("project-name", "Name", true),
    ...field("project-description", "Description", false),
    submit,
  );

  const showError = (err: unknown) => {
    error.textContent = describe(err);
    error.hidden = false;
  };
  const clearError = () => {
    error.textContent = "";
    error.hidden = true;
  };

  const loadProjects = async () => {
    const res = await admin.listProjects({ limit: PAGE_SIZE });
    list.replaceChildren(...res.projects.map(projectItem));
    empty.hidden = res.projects.length > 0;
    list.dataset.loaded = "true";
  };

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = (id: string) => (form.elements.namedItem(id) as HTMLInputElement).value.trim();
    const project = {
      id: value("project-id"),
      name: value("project-name"),
      description: value("project-description"),
    };
    submit.disabled = true;
    clearError();
    admin
      .registerProject({ project })
      .then(async () => {
        form.reset();
        await loadProjects();
      })
      .catch((err) => (isUnauthenticated(err) ? showSignIn() : showError(err)))
      .finally(() => {
        submit.disabled = submit.dataset.missingRole === "true";
      });
  });

  const rolesList = h("ul", { id: "roles", "aria-label": "Your roles" });
  const rolesSection = h(
    "section",
    { "aria-labelledby": "roles-h", hidden: true },
    h("h2", { id: "roles-h" }, "Your roles"),
    rolesList,
  );
  const registerNote = h("p", { id: "register-note", class: "muted", hidden: true });
  const showRoles = (roles: RoleGrant[]) => {
    rolesList.replaceChildren(
      ...roles.map((r) =>
        h(
          "li",
          { "data-role": r.role },
          h("span", { class: "id" }, r.role),
          " on projects ",
          h("span", { class: "projects" }, r.projects.join(", ")),
          " · domains ",
          h("span", { class: "domains" }, r.domains.join(", ")),
        ),
      ),
    );
    if (roles.length === 0) rolesList.append(h("li", { class: "muted" }, "No roles: you cannot see any project."));
    rolesSection.hidden = false;
    if (!roles.some((r) => r.actions.includes(REGISTER_ACTION))) {
      registerNote.textContent =
        "Registering a project needs the projectAdmin or admin role (ADMINISTER_PROJECT) on it; you have no such role.";
      registerNote.hidden = false;
      submit.disabled = true;
      submit.dataset.missingRole = "true";
    } else {
      registerNote.textContent = `Registering needs ${REGISTER_ACTION} on the project: projectAdmin or admin there.`;
      registerNote.hidden = false;
    }
  };

  app.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "who" },
      h("h2", { id: "who" }, "Signed in as ", h("span", { id: "user-name" }, displayName)),
      h(
        "p",
        { class: "muted" },
        "Subject ",
        h("span", { id: "user-subject", class: "id" }, user.subject),
        ...(user.email ? [" · ", h("span", { id: "user-email" }, user.email)] : []),
      ),
    ),
    error,
    h("section", { "aria-labelledby": "projects-h" }, h("h2", { id: "projects-h" }, "Projects"), list, empty),
    rolesSection,
    h("section", { "aria-labelledby": "register-h" }, h("h2", { id: "register-h" }, "Register a project"), registerNote, form),
  );
  setState("signed-in");

  fetchRoles()
    .then((roles) => {
      if (roles) showRoles(roles);
    })
    .catch(() => undefined)
    .finally(() => {
      app.dataset.roles = rolesSection.hidden ? "none" : "shown";
    });

  loadProjects().catch((err) => (isUnauthenticated(err) ? showSignIn() : showError(err)));
}

async function main(): Promise<void> {
  // Without the CSRF cookie there is no session this page could use.
  if (!csrfToken()) {
    showSignIn();
    return;
  }
  try {
    showSignedIn(await identity.userInfo({}));
  } catch (err) {
    if (isUnauthenticated(err)) showSignIn();
    else showFatal(err);
  }
}

void main();
