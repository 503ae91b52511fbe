"""Rich progress for training: a bar per epoch with ETA, loss, lr and images/s (rank 0 only)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from zoo.progress import progress_bar


class TrainProgress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True)
        # A live bar only on a terminal; logs and pipes get the per-epoch lines.
        self.bar = progress_bar(eta=True, info=True, console=self.console,
                                disable=not (enabled and self.console.is_terminal))
        self.task: Any = None

    def __enter__(self) -> "TrainProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def start_epoch(self, name: str, total: int, done: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(name, total=total, completed=done, info="")

    def advance(self, loss: float, lr: float, images_per_s: float) -> None:
        self.bar.update(self.task, advance=1, info=f"loss {loss:.3f}  lr {lr:.2e}  {images_per_s:.1f} img/s")

    def epoch_done(self, result: dict[str, Any]) -> None:
        parts = [f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)]
        if self.enabled:
            task = self.bar.tasks[-1] if self.bar.tasks else None
            head = f"{task.description}: {task.fields.get('info', '')}  " if task is not None else ""
            self.bar.console.print(f"{head}validation: {'  '.join(parts) or 'no validation images'}")
