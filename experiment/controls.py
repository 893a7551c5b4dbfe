"""Board controls before each run, through jtop (jetson-stats >= 4, whose
service runs as root, so this needs no sudo): the nvpmodel power mode,
jetson_clocks on, the fan at full speed; and ``sync`` + dropping the page cache
(which does need root).

The jtop API used (jetson-stats 4.x): ``jetson.nvpmodel = "MAXN"`` or an id;
``jetson.nvpmodel.name/.id/.models``; ``jetson.jetson_clocks = True`` and
``bool(jetson.jetson_clocks)``; ``jetson.fan.profile = "manual"``,
``jetson.fan.speed = 100`` (percent, first fan), ``jetson.fan.all_profiles(name)``;
``jetson.board["hardware"]["Jetpack" | "L4T" | "Model"]``; ``jetson.ok()`` waits
for the service's next update, so settings are polled until they show.

What a sweep changes it restores (``found`` / ``restore``): jtop offers jetson_clocks only as on/off, and
turning it off runs ``jetson_clocks --restore`` on the clocks jtop's service stored (``--store``) when it
first started with them off; so the power mode, jetson_clocks on/off and the fan's profile and speed
are what is recorded.
"""
import contextlib
import os
import subprocess
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from experiment.plan import PowerMode

DROP_CACHES = "/proc/sys/vm/drop_caches"
FAN_MANUAL = "manual"  # jtop's name for the profile that lets a speed be set
POLLS = 30  # jetson.ok() updates to wait for a setting to show (~1 s each)
FAN_BY_HAND = "set the fan's profile back to {} in jtop's CTRL page ('jtop')"


class ControlError(Exception):
    """A control that could not be applied; one line naming the fix."""


class NoControls:
    """Off a Jetson (no jtop): nothing is set, and the context says so."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def describe(self) -> str:
        return ("not a Jetson ({}): power mode, jetson_clocks and fan are NOT set; runs go ahead as the "
                "machine is".format(self.reason))

    def check_power_modes(self, modes: Sequence[PowerMode]) -> None:
        pass

    def prepare(self, power_mode: PowerMode, jetson_clocks: bool, fan_max: bool) -> Dict[str, str]:
        return {"controls": "none"}

    def found(self) -> Optional[Dict[str, Any]]:
        return None  # nothing will be changed, so nothing to restore

    def restore(self, state: Dict[str, Any]) -> List[str]:
        return by_hand(state, "jtop is not importable here ({})".format(self.reason))


class JtopControls:
    def __init__(self, jtop_class: Callable[[], Any]) -> None:
        self.jtop_class = jtop_class

    def describe(self) -> str:
        return "Jetson controls through jtop: power mode, jetson_clocks, fan"

    @contextlib.contextmanager
    def _open(self) -> Iterator[Any]:
        """The connected client; jtop connects in ``__enter__`` (``start()``), which raises when the service is
        down, so both steps are one ControlError."""
        try:
            client = self.jtop_class()
            jetson = client.__enter__()
        except Exception as exc:  # jtop raises its own JtopException types
            raise ControlError("cannot talk to the jtop service ({}); start it with "
                               "'sudo systemctl restart jtop.service'".format(exc))
        try:
            yield jetson
        finally:
            client.__exit__(None, None, None)

    def check_power_modes(self, modes: Sequence[PowerMode]) -> None:
        """Fail before anything runs if the board lacks a requested mode."""
        wanted = [m for m in modes if m is not None]
        if not wanted:
            return
        with self._open() as jetson:
            if jetson.nvpmodel is None:
                raise ControlError("sweep.power_mode: this board has no nvpmodel; use [null]")
            models = list(jetson.nvpmodel.models)
            for mode in wanted:
                if (isinstance(mode, int) and mode >= len(models)) or (isinstance(mode, str) and mode not in models):
                    raise ControlError("sweep.power_mode: this board has no power mode {!r} (it has: {})".format(
                        mode, ", ".join("{}={}".format(i, m) for i, m in enumerate(models))))

    def prepare(self, power_mode: PowerMode, jetson_clocks: bool, fan_max: bool) -> Dict[str, str]:
        with self._open() as jetson:
            if power_mode is not None:
                # nvpmodel first: changing the mode resets the clocks jetson_clocks pinned.
                current = lambda: jetson.nvpmodel.id if isinstance(power_mode, int) else jetson.nvpmodel.name  # noqa
                if current() != power_mode:
                    jetson.nvpmodel = power_mode
                    if not _wait(jetson, lambda: current() == power_mode):
                        raise ControlError("power mode {!r} did not take effect (some modes need a reboot: "
                                           "'sudo nvpmodel -m ID' and reboot, then rerun)".format(power_mode))
            if jetson_clocks and jetson.jetson_clocks is not None and not bool(jetson.jetson_clocks):
                jetson.jetson_clocks = True
                if not _wait(jetson, lambda: bool(jetson.jetson_clocks)):
                    raise ControlError("jetson_clocks did not turn on; check 'sudo jetson_clocks --show'")
            fan = _fan_max(jetson) if fan_max else None
            hardware = (jetson.board or {}).get("hardware", {})
            context = {
                "power_mode": jetson.nvpmodel.name if jetson.nvpmodel is not None else None,
                "power_mode_id": jetson.nvpmodel.id if jetson.nvpmodel is not None else None,
                "jetson_clocks": "on" if jetson.jetson_clocks else "off",
                "fan_speed": fan,
                "jetpack": hardware.get("Jetpack"),
                "l4t": hardware.get("L4T"),
                "board": hardware.get("Model"),
            }
        return {k: str(v) for k, v in context.items() if v is not None}

    def found(self) -> Optional[Dict[str, Any]]:
        """The settings a sweep changes, as the board has them now."""
        with self._open() as jetson:
            state = {}  # type: Dict[str, Any]
            if jetson.nvpmodel is not None:
                state.update(nvpmodel_id=jetson.nvpmodel.id, nvpmodel_name=jetson.nvpmodel.name)
            if jetson.jetson_clocks is not None:
                state["jetson_clocks"] = bool(jetson.jetson_clocks)
            if jetson.fan is not None and len(jetson.fan) > 0:
                state.update(fan_profile=jetson.fan.profile, fan_speed=jetson.fan.speed)
            return state

    def restore(self, state: Dict[str, Any]) -> List[str]:
        """Sets ``state`` back: the power mode first (it resets the clocks), then jetson_clocks, then the fan.
        Returns one line per setting that could not be restored, with the command that restores it."""
        try:
            with self._open() as jetson:
                failed = []
                for restore_one in (_restore_nvpmodel, _restore_clocks, _restore_fan):
                    try:
                        failed += restore_one(jetson, state)
                    except Exception as exc:  # jtop's own exceptions, a lost service: said, never a traceback
                        failed += by_hand(state, "{}: {}".format(type(exc).__name__, exc), restore_one)
                return failed
        except ControlError as exc:
            return by_hand(state, str(exc).split(";")[0])


def _restore_nvpmodel(jetson, state: Dict[str, Any]) -> List[str]:
    if "nvpmodel_id" not in state or jetson.nvpmodel is None or jetson.nvpmodel.id == state["nvpmodel_id"]:
        return []
    jetson.nvpmodel = state["nvpmodel_id"]
    if _wait(jetson, lambda: jetson.nvpmodel.id == state["nvpmodel_id"]):
        return []
    return by_hand(state, "it did not take effect", _restore_nvpmodel)


def _restore_clocks(jetson, state: Dict[str, Any]) -> List[str]:
    if "jetson_clocks" not in state or jetson.jetson_clocks is None or \
            bool(jetson.jetson_clocks) == state["jetson_clocks"]:
        return []
    jetson.jetson_clocks = state["jetson_clocks"]
    if _wait(jetson, lambda: bool(jetson.jetson_clocks) == state["jetson_clocks"]):
        return []
    return by_hand(state, "it did not take effect", _restore_clocks)


def _restore_fan(jetson, state: Dict[str, Any]) -> List[str]:
    """The profile; the speed too where it was the manual profile's (another profile sets its own)."""
    fan = jetson.fan
    if "fan_profile" not in state or fan is None or len(fan) == 0:
        return []
    if fan.profile != state["fan_profile"]:
        fan.profile = state["fan_profile"]
        _wait(jetson, lambda: fan.profile == state["fan_profile"])
    if state["fan_profile"] == FAN_MANUAL and state.get("fan_speed") is not None:
        fan.speed = state["fan_speed"]
        _wait(jetson, lambda: abs((fan.speed or 0) - state["fan_speed"]) < 1)
    if fan.profile == state["fan_profile"]:
        return []
    return by_hand(state, "it did not take effect", _restore_fan)


def by_hand(state: Dict[str, Any], why: str, only: Optional[Callable] = None) -> List[str]:
    """One line per recorded setting (or the ``only`` one) naming it, why, and the command that restores it."""
    lines = []
    if "nvpmodel_id" in state and only in (None, _restore_nvpmodel):
        lines.append("could not restore the power mode {} ({}): run 'sudo nvpmodel -m {}' (and reboot if it "
                     "asks)".format(state.get("nvpmodel_name"), why, state["nvpmodel_id"]))
    if "jetson_clocks" in state and only in (None, _restore_clocks):
        lines.append("could not restore jetson_clocks {} ({}): run {}".format(
            "on" if state["jetson_clocks"] else "off", why,
            "'sudo jetson_clocks'" if state["jetson_clocks"] else "'sudo jetson_clocks --restore'"))
    if "fan_profile" in state and only in (None, _restore_fan):
        lines.append("could not restore the fan ({}): {}".format(why, FAN_BY_HAND.format(
            state["fan_profile"] + (" at {:g} %".format(state["fan_speed"])
                                    if state["fan_profile"] == FAN_MANUAL and state.get("fan_speed") is not None
                                    else ""))))
    return lines


def _wait(jetson, done: Callable[[], bool]) -> bool:
    for _ in range(POLLS):
        if done():
            return True
        if not jetson.ok():
            break
    return done()


def _fan_max(jetson) -> Optional[str]:
    """Manual profile, 100 %; the speed jtop reads back (percent), None if no fan."""
    fan = jetson.fan
    if fan is None or len(fan) == 0:
        return None
    first = list(fan.keys())[0]
    if FAN_MANUAL in fan.all_profiles(first) and fan.profile != FAN_MANUAL:
        fan.profile = FAN_MANUAL
        _wait(jetson, lambda: fan.profile == FAN_MANUAL)
    fan.speed = 100
    _wait(jetson, lambda: (fan.speed or 0) >= 99)
    return "{:g}".format(fan.speed)


def find_controls():
    """JtopControls on a Jetson with jetson-stats, else NoControls saying why."""
    try:
        from jtop import jtop  # type: ignore
    except ImportError as exc:
        return NoControls("the jtop module of jetson-stats is not importable: {}".format(exc))
    return JtopControls(jtop)


def check_can_drop_caches() -> None:
    if os.geteuid() != 0:
        raise ControlError("dropping the page cache before each run needs root: run with sudo, or pass "
                           "--no-drop-caches (or set controls.drop_caches: false) and say so in the paper")


def drop_caches(path: str = DROP_CACHES) -> None:
    """``sync`` then ``echo 3 > /proc/sys/vm/drop_caches``: every run starts with
    the dataset out of the page cache, as the reference method's cold start."""
    subprocess.run(["sync"], check=True)
    try:
        with open(path, "w") as f:
            f.write("3\n")
    except OSError as exc:
        raise ControlError("cannot drop the page cache via {} ({}); run as root, or --no-drop-caches".format(
            path, exc.strerror or exc))
