"""Running the real ``einlass`` command in subprocesses, on a database of its own."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from einlass.config import Settings

EINLASS = Path(sys.executable).with_name("einlass")
SECRET_KEY = "cli-test-secret-key"


@dataclass(frozen=True)
class Cli:
    workdir: Path
    database_url: str
    env: dict[str, str]

    def run(self, command: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """``command`` is split like a shell would; the exit code must be ``expect``."""
        [result] = self.run_parallel((command, expect))
        return result

    def json(self, command: str) -> Any:
        return json.loads(self.run(command).stdout)

    def run_parallel(self, *calls: tuple[str, int]) -> list[subprocess.CompletedProcess[str]]:
        """Start independent commands at once (each needs a second or more to import); check exit codes."""
        started = [
            (
                command,
                expect,
                subprocess.Popen(
                    [str(EINLASS), *shlex.split(command)],
                    cwd=self.workdir,
                    env=self.env,
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
            )
            for command, expect in calls
        ]
        results = []
        for command, expect, process in started:
            stdout, stderr = process.communicate(timeout=180)
            assert process.returncode == expect, (
                f"einlass {command} exited {process.returncode}\nstdout: {stdout}\nstderr: {stderr}"
            )
            results.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
        return results

    def settings(self) -> Settings:
        return Settings(
            database_url=self.database_url,
            secret_key=SECRET_KEY,
            run_worker_in_process=False,
            mail_dir=self.workdir / "mail",
            base_url="http://einlass.test",
        )


def migrated_cli(tmp_path_factory: pytest.TempPathFactory, name: str) -> Cli:
    """A migrated SQLite database for one test module; each test uses its own merchants."""
    workdir = tmp_path_factory.mktemp(name)
    database_url = f"sqlite+aiosqlite:///{workdir / 'cli.db'}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("EINLASS_")}
    env.update(EINLASS_DATABASE_URL=database_url, EINLASS_SECRET_KEY=SECRET_KEY, EINLASS_LOG_LEVEL="WARNING")
    runner = Cli(workdir, database_url, env)
    assert runner.run("migrate").stdout.strip() == "database is up to date"
    return runner
