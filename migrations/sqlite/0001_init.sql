-- Projects (flyteidl.admin.Project). Key (org, identifier); org '' is the default org.
-- labels: JSON object text. state: Project.ProjectState enum value.
-- created_at: unix seconds, set by the database on insert.
CREATE TABLE projects (
    org         TEXT    NOT NULL,
    identifier  TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    labels      TEXT    NOT NULL DEFAULT '{}',
    state       INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER)),
    PRIMARY KEY (org, identifier)
) STRICT;
