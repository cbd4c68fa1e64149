"""The Train page's pieces: the training settings form and the live view of one run.

The live view only reads the run folder; a fragment with `run_every` redraws it while the run is active and
stops polling (`run_every=None`) once it has ended, so an idle page costs nothing.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from unet import backend, runs, workspace
from unet.charts import history_figure
from unet.config import LOSS_NAMES, LOSSES, LR_SCHEDULES, OPTIMIZERS, SCHEDULE_NAMES, Config, TrainConfig
from unet.dataset import Dataset
from unet.errors import UserError
from unet.run_summary import STATE_NAMES
from unet.ui.score_view import held_back_panel
from unet.units import clock_text

REFRESH_SECONDS = 1.5
STATE_BADGES = {  # the words are STATE_NAMES', which the run tables and the report show too
    state: (STATE_NAMES[state], color, icon) for state, color, icon in (
        (runs.STARTING, "gray", ":material/hourglass_top:"),
        (runs.QUEUED, "gray", ":material/schedule:"),
        (runs.RUNNING, "blue", ":material/play_circle:"),
        (runs.COMPLETED, "green", ":material/check_circle:"),
        (runs.STOPPED, "orange", ":material/stop_circle:"),
        (runs.FAILED, "red", ":material/error:"),
        (runs.INTERRUPTED, "violet", ":material/pause_circle:"),
    )
}
RECENT_SECONDS = 120.0
LIMITS = {  # the typed boxes: no min/max on the widget, so what the user typed is what the page checks and shows
    "Epochs": (1, 10000),
    "Stop early after": (0, 1000),
    "Lower the learning rate after": (0, 1000),
    "Time limit": (0, 10080),
}


def polled(run: runs.Run) -> bool:
    """Whether the page follows `run` live: active, or its status changed in the last RECENT_SECONDS."""
    return run.is_active or runs.heartbeat_age(run) < RECENT_SECONDS


def out_of_range(label: str, value: float) -> str | None:
    """A plain message when a typed value is outside its field's range, naming the field; else None."""
    low, high = LIMITS[label]
    if low <= value <= high:
        return None
    return f"**{label}**: {value:g} is {'less' if value < low else 'more'} than allowed; type a number from {low:g} " \
           f"to {high:g}."


def train_settings(current: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """Widgets for the training options: the TrainConfig they describe (the current one for a field whose typed
    value is out of range) and a message per such field, so the page can refuse to start on values it does not
    show."""
    problems: list[str] = []

    def checked(label: str, value: float, fallback: float) -> float:
        problem = out_of_range(label, value)
        if problem:
            problems.append(problem)
            return fallback
        return value

    left, right = st.columns(2)
    epochs = left.number_input(
        "Epochs", value=current.epochs, step=1,
        help="How many times the network sees every training image, from 1 to 10000. Early stopping may end sooner.",
    )
    epochs = checked("Epochs", epochs, current.epochs)
    learning_rate = left.select_slider(
        "Learning rate", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        value=min([1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2], key=lambda v: abs(v - current.learning_rate)),
        format_func=lambda v: f"{v:g}",
        help="How big each learning step is. 0.001 suits Adam; lower it if the loss jumps around.",
    )
    optimizer = left.selectbox(
        "Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(current.optimizer),
        help="The method that adjusts the network. Adam is a safe default.",
    )
    loss = left.selectbox(
        "Loss", LOSSES, index=LOSSES.index(current.loss), format_func=LOSS_NAMES.get,
        help="What the network tries to make small. Dice + cross-entropy copes well with small objects.",
    )
    validation_split = left.slider(
        "Validation share", 0.05, 0.5, current.validation_split, 0.05,
        help="Images held back to measure progress honestly; the network never learns from them.",
    )
    early = right.number_input(
        "Stop early after (epochs without improvement)", value=current.early_stopping_patience, step=1,
        help="Ends training when validation Dice has not improved for this many epochs (0 to 1000). 0 turns it off.",
    )
    early = checked("Stop early after", early, current.early_stopping_patience)
    lr_schedule = right.selectbox(
        "Learning-rate schedule", LR_SCHEDULES, index=LR_SCHEDULES.index(current.lr_schedule),
        format_func=SCHEDULE_NAMES.get,
        help="How the step size changes during training. 'Warm up, then lower smoothly' starts gently, peaks at "
             "the learning rate you chose and ends with small steps by the last epoch (or by the time limit), which "
             "settles the network.",
    )
    reduce_lr = right.number_input(
        "Lower the learning rate after (epochs without improvement)", value=current.reduce_lr_patience, step=1,
        disabled=lr_schedule != "plateau",
        help="With the 'halve when progress stalls' schedule: halves the learning rate after this many epochs "
             "without a lower validation loss (0 to 1000). 0 turns it off.",
    )
    reduce_lr = checked("Lower the learning rate after", reduce_lr, current.reduce_lr_patience)
    max_minutes = right.number_input(
        "Time limit (minutes, 0 = none)", value=float(current.max_minutes), step=1.0,
        help="Training stops cleanly after this long (up to 10080 minutes, a week) and keeps the best model. With "
             "the smooth schedule, the learning rate reaches its lowest at the limit, so a time-limited run still "
             "finishes settled.",
    )
    max_minutes = checked("Time limit", max_minutes, current.max_minutes)
    class_weights = st.checkbox(
        "Weight rare classes more", current.class_weights,
        help="Counts mistakes on rare classes more, so small structures are not ignored.",
    )
    chosen = dataclasses.replace(
        current, epochs=int(epochs), learning_rate=float(learning_rate), optimizer=optimizer, loss=loss,
        validation_split=float(validation_split), early_stopping_patience=int(early),
        lr_schedule=lr_schedule, reduce_lr_patience=int(reduce_lr), max_minutes=float(max_minutes),
        class_weights=class_weights,
    )
    return chosen, problems


@st.cache_data(ttl=15, show_spinner=False)
def where_trainings_run() -> str:
    """`unet.backend.describe()`, asked of the cluster at most every 15 s (each rerun would ask it)."""
    return backend.describe()


def start(config: Config, dataset: Dataset, name: str) -> runs.Run:
    """Create a run folder and start its trainer through the configured backend (`unet.backend`). A cluster that
    does not answer raises UserError before the folder is made: nothing is started."""
    address = backend.ray_address()
    cluster = backend.connect(address) if address else None
    run = runs.create_run(workspace.runs_dir(), name or dataset.name, config, dataset.root)
    backend.start(run.path, dataset.root, cluster=cluster)
    where_trainings_run.clear()  # what is free changed
    return run


def resume(run: runs.Run) -> None:
    data = run.info.get("dataset")
    backend.start(run.path, data, resume=True)


def _progress(status: dict, history: list[dict], limit_seconds: float = 0.0) -> tuple[float, str, float | None]:
    """(fraction done, label, seconds left or None) from the status and the finished epochs; a time limit
    (`limit_seconds` per training session, 0 for none) caps the time left, since training stops there."""
    epochs = max(1, int(status.get("epochs") or 1))
    done_epochs = len(history)
    batches = max(1, int(status.get("batches") or 1))
    batch = int(status.get("batch") or 0)
    in_epoch = 0.0 if status.get("state") != runs.RUNNING else min(batch / batches, 1.0)
    fraction = min(1.0, (done_epochs + in_epoch) / epochs)
    label = f"Epoch {min(done_epochs + 1, epochs)} of {epochs} · batch {batch} of {batches}"
    left = None
    if history:
        per_epoch = sum(r.get("seconds", 0) for r in history[-3:]) / len(history[-3:])
        left = per_epoch * (epochs - done_epochs - in_epoch)
    if limit_seconds > 0 and status.get("state") == runs.RUNNING:
        until_limit = max(0.0, limit_seconds - runs.session_seconds(status))
        left = until_limit if left is None else min(left, until_limit)
    return fraction, label, left


def run_view(run: runs.Run, class_names: list[str], class_colors: list[tuple[int, int, int]] | None = None) -> None:
    """Status, progress, charts and latest samples of a run; polls the folder while the run is active. The classes
    are the network's (`unet.run_summary.network_classes`): each per-class curve is drawn in its class's colour."""
    # Polled while the run is active, and for a while after its status last changed: a run that ended a moment
    # ago (or was judged gone too early) still shows what its trainer writes next.
    active = run.is_active
    poll = active or runs.heartbeat_age(run) < RECENT_SECONDS
    try:
        crop_proxy = run.config().data.resize == "crop"
        limit_seconds = run.config().train.max_minutes * 60
    except UserError:
        crop_proxy, limit_seconds = True, 0.0

    @st.fragment(run_every=REFRESH_SECONDS if poll else None)
    def live() -> None:
        status = run.read_status()
        history = run.read_history()
        state = status.get("state", runs.QUEUED)
        if state in runs.ACTIVE_STATES and run.on_ray:
            backend.check_runs(workspace.runs_dir())  # a Ray job that ended, or a Stop it ignored
            status = run.read_status()
            state = status.get("state", state)
        elif state in runs.ACTIVE_STATES and not run.is_active:
            runs.mark_interrupted_runs(workspace.runs_dir())
            status = run.read_status()
            state = status.get("state", state)
        label, color, icon = STATE_BADGES.get(state, (state, "gray", ":material/help:"))
        if state == runs.COMPLETED and status.get("near_baseline"):
            label, color, icon = "Completed, barely better than the baseline", "orange", ":material/warning:"
        head = st.columns([2, 1, 1, 1])
        head[0].markdown(f"### {run.name}  \n:{color}-badge[{icon} {label}]")
        fraction, progress_label, left = _progress(status, history, limit_seconds)
        head[1].metric("Elapsed", clock_text(runs.elapsed_seconds(status)),
                       help="Training time over every session of this run, resumes included.")
        head[2].metric("Time left", clock_text(left) if left is not None and state == runs.RUNNING else "–",
                       help="Estimated from the last epochs, and never past the time limit; early stopping may "
                            "end sooner.")
        best = status.get("best_val_dice")
        head[3].metric("Best val Dice (crops)" if crop_proxy else "Best val Dice (shrunk)",
                       f"{best:.3f}" if isinstance(best, (int, float)) else "–",
                       help="A quick check during training, on what the network sees: "
                            + ("the centre crop of each validation image" if crop_proxy else
                               "the validation images shrunk to the input size")
                            + ", mean over the foreground classes. It picks the best model. At the end the best "
                              "model is scored on the whole validation images, beside the trivial baseline.")
        if status.get("init_from"):
            st.caption(f"{status['init_from'][0].upper()}{status['init_from'][1:]}.")
        placed = backend.read_placement(run)
        if placed.get("backend") == backend.RAY:
            job, node = placed.get("job_id"), status.get("node") or placed.get("node") or placed.get("address")
            st.caption(f"Ray job `{job}` on {node} ({placed.get('address')}) · "
                       f"[the job's log]({placed.get('dashboard')}/#/jobs/{job})")
        if isinstance(status.get("object_ap50"), (int, float)):
            st.caption("Objects found on the sample validation crops: AP@0.5 "
                       f"{status['object_ap50']:.2f} (found / (found + extra + missed), at IoU 0.5; updated with "
                       "the sample pictures). The held-back images are scored object by object at the end.")
        if state in runs.ACTIVE_STATES:
            st.progress(fraction, text=progress_label if state == runs.RUNNING else status.get("message", "Waiting…"))
            if st.button("Stop", icon=":material/stop:", type="secondary", key=f"stop_{run.id}",
                         help="Stops after the current batch and keeps the best model so far; you can resume later."):
                backend.stop(run)
                st.toast("Stopping after the current batch…")
        if state == runs.FAILED and status.get("error"):
            st.error(status["error"], icon=":material/error:")
        elif status.get("message") and state not in runs.ACTIVE_STATES:
            st.caption(status["message"].split(". Warning:")[0])
        if state not in runs.ACTIVE_STATES:
            held_back_panel(run)
        if history:
            st.plotly_chart(history_figure(history, class_names, class_colors), width="stretch",
                            key=f"chart_{run.id}")
        elif state in runs.ACTIVE_STATES:
            st.caption("The charts appear after the first epoch.")
        latest = run.file("samples") / "latest.png"
        if latest.exists():
            st.image(latest.read_bytes(), caption="Validation samples: image · truth · prediction (latest epoch, "
                                                  "what the network sees)")
        seen = st.session_state.get(f"shown_state_{run.id}")
        st.session_state[f"shown_state_{run.id}"] = state
        if seen is not None and (seen in runs.ACTIVE_STATES) != (state in runs.ACTIVE_STATES):
            st.rerun()  # the run just ended (or is alive after all): redraw the whole page once (Resume, run list)

    live()
