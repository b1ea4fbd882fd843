"""The applications' env file (the seed's `.env.docker`, MIGRATION_APP_ENV_FILE): the cut-over
points it at PostgreSQL, the rollback back at MySQL, and neither touches any other line.

The cut-over sets the seed's DATABASE_TYPE / HOST / PORT / USERNAME and each database's own line
(migration.toml `app_setting`: Alkemio's DATABASE_NAME, Kratos's DSN) and keeps a copy of the
file as it was beside it (`NAME.before-cutover`). The rollback gives each of those lines the
value it had in that copy (a line the cut-over added goes again). A password is never written:
DATABASE_PASSWORD stays the line it was, and a DSN refers to it as `${DATABASE_PASSWORD}`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from alkemio_assets.core.settings import Endpoint, Settings

BACKUP_SUFFIX = ".before-cutover"
# an env line: optional `export`, the name, `=`, the value (compose and dotenv read the same)
_LINE = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)(\s*=\s*)(.*)$")

# migration.toml app_setting.form -> the value of the line for a database on the target
APP_FORMS: dict[str, Callable[[Endpoint, str], str]] = {
    "name": lambda target, database: database,
    # Kratos's DSN as Alkemio's compose file writes it, the password by reference
    "dsn": lambda target, database: (
        f"postgres://{target.user}:${{DATABASE_PASSWORD}}@{target.host}:{target.port}/{database}"
        "?sslmode=prefer&max_conns=20&max_idle_conns=4"
    ),
}


def postgres_settings(settings: Settings) -> dict[str, str]:
    """Every line the cut-over writes, in order: the seed's DATABASE_*, then each database's own."""
    target = settings.target
    values = {
        "DATABASE_TYPE": "postgres",
        "DATABASE_HOST": target.host,
        "DATABASE_PORT": str(target.port),
        "DATABASE_USERNAME": target.user,
    }
    for pair in settings.pairs:
        if pair.app_setting is not None:
            values[pair.app_setting.variable] = APP_FORMS[pair.app_setting.form](target, pair.target_database)
    return values


def env_values(text: str) -> dict[str, str]:
    """The values an env file sets (the last line of a name wins, as in dotenv)."""
    return {m.group(2): m.group(4) for line in text.splitlines() if (m := _LINE.match(line))}


def rewrite_env(text: str, values: Mapping[str, str | None]) -> str:
    """`text` with each line of a name in `values` set to its value (None: the line removed) and
    the names it lacks appended; every other line, comment and blank line exactly as it was."""
    out, seen = [], set()
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        m = _LINE.match(body)
        if m is None or m.group(2) not in values:
            out.append(line)
            continue
        seen.add(m.group(2))
        if (value := values[m.group(2)]) is not None:
            out.append(f"{m.group(1)}{m.group(2)}{m.group(3)}{value}{line[len(body) :]}")
    added = [f"{name}={value}\n" for name, value in values.items() if name not in seen and value is not None]
    if added and out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    return "".join(out + added)


def backup_path(env_file: Path) -> Path:
    return env_file.with_name(env_file.name + BACKUP_SUFFIX)


def _replace(path: Path, text: str) -> None:
    """Write `text` over `path` at once (a crash leaves the old or the new file), keeping its mode."""
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        out.write(text)
    shutil.copymode(path, scratch)
    os.replace(scratch, path)


def switch_to_postgres(settings: Settings) -> tuple[Path, Path] | None:
    """Point the applications' env file at PostgreSQL; return it and its backup (None: no file
    configured). The backup is the file as the applications last ran on MySQL: a second cut-over
    (a rehearsal) keeps it."""
    env_file = settings.app_env_file
    if env_file is None:
        return None
    if not env_file.is_file():
        raise FileNotFoundError(f"MIGRATION_APP_ENV_FILE={env_file}: no such file to point at PostgreSQL")
    text, backup = env_file.read_text(encoding="utf-8"), backup_path(env_file)
    if env_values(text).get("DATABASE_TYPE", "mysql") != "postgres" or not backup.exists():
        shutil.copy2(env_file, backup)
    _replace(env_file, rewrite_env(text, postgres_settings(settings)))
    return env_file, backup


def switch_to_mysql(settings: Settings) -> str | None:
    """Give each line the cut-over wrote its value from the backup (None: no file configured);
    without a backup, the seed's two lines: DATABASE_TYPE=mysql and the MySQL host."""
    env_file = settings.app_env_file
    if env_file is None:
        return None
    if not env_file.is_file():
        raise FileNotFoundError(f"MIGRATION_APP_ENV_FILE={env_file}: no such file to point back at MySQL")
    backup = backup_path(env_file)
    if backup.exists():
        before = env_values(backup.read_text(encoding="utf-8"))
        values: dict[str, str | None] = {name: before.get(name) for name in postgres_settings(settings)}
        how = f"the lines the cut-over wrote, as {backup.name} has them"
    else:
        values = {"DATABASE_TYPE": "mysql", "DATABASE_HOST": settings.source.host}
        how = f"DATABASE_TYPE=mysql, DATABASE_HOST={settings.source.host} (no {backup.name} to restore from)"
    _replace(env_file, rewrite_env(env_file.read_text(encoding="utf-8"), values))
    return f"{env_file}: {how}"
