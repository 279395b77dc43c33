-- Projects (flyteidl.admin.Project). Key (org, identifier); org '' is the default org.
-- labels: JSON object text. state: Project.ProjectState enum value.
-- created_at: unix seconds, set by the database on insert (one clock for all replicas).
-- COLLATE "C": byte order, so sorting and pagination match the SQLite backend.
CREATE TABLE projects (
    org         TEXT    COLLATE "C" NOT NULL,
    identifier  TEXT    COLLATE "C" NOT NULL,
    name        TEXT    COLLATE "C" NOT NULL,
    description TEXT    COLLATE "C" NOT NULL DEFAULT '',
    labels      TEXT    NOT NULL DEFAULT '{}',
    state       INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL DEFAULT (floor(extract(epoch FROM now()))::BIGINT),
    PRIMARY KEY (org, identifier)
);
