"""A stand-in for jetson-stats' ``jtop`` package (4.x client API) for tests:
the same attribute names, setters and value shapes, a Xavier NX on JetPack
5.1.2, and every control it is asked for appended as a JSON line to the file
named by $FAKE_JTOP_LOG.

Shapes follow rbonghi/jetson_stats (jtop/jtop.py, jtop/core/nvpmodel.py,
jtop/core/fan.py, jtop/core/jetson_clocks.py, 4.x): ``jetson.nvpmodel`` is an
NVPModel whose ``str()`` and ``.name`` are the mode name, ``.id`` its index and
``.models`` the names; assigning a name or an id changes it. ``jetson.jetson_clocks``
is truthy when running. ``jetson.fan`` is dict-like by fan name
(``{'pwmfan': {'speed': [..], 'rpm': [..], 'profile': ..}}``) with ``profile`` and
``speed`` (percent, first fan) properties and ``all_profiles(name)``; JetPack 5
with nvfancontrol offers quiet, cool and manual. ``jetson.board['hardware']``
carries 'Model', 'Module', 'L4T', 'Jetpack'. Mode names: the Xavier NX's
nvpmodel modes 0-8 (MODE_15W_2CORE .. MODE_20W_6CORE).

The board's settings outlive a process, as a real board's do: with $FAKE_JTOP_STATE they are read from and
written to that JSON file, so a test can start the runner, kill it, start it again and check that the
board ends as it was found. A profile other than manual hands the fan back to nvfancontrol, which sets
its own speed (``AUTO_SPEED``).
"""
import json
import os

MODES = ["MODE_15W_2CORE", "MODE_15W_4CORE", "MODE_15W_6CORE", "MODE_10W_2CORE", "MODE_10W_4CORE",
         "MODE_10W_DESKTOP", "MODE_20W_2CORE", "MODE_20W_4CORE", "MODE_20W_6CORE"]
AUTO_SPEED = 30.0  # what nvfancontrol's quiet/cool profiles run the idle fan at here
FOUND = {"mode": 2, "clocks": False, "profile": "quiet", "speed": AUTO_SPEED}  # the board as a test finds it
STATE_FILE = os.environ.get("FAKE_JTOP_STATE")
STATE = dict(FOUND)
if STATE_FILE and os.path.exists(STATE_FILE):
    with open(STATE_FILE) as f:
        STATE.update(json.load(f))
FAIL_MODES = set(filter(None, os.environ.get("FAKE_JTOP_STUCK_MODES", "").split(",")))


class JtopException(Exception):
    pass


def _set(**changes):
    STATE.update(changes)
    if STATE_FILE:
        with open(STATE_FILE, "w") as f:
            json.dump(STATE, f, sort_keys=True)


def _log(**event):
    path = os.environ.get("FAKE_JTOP_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")


class NVPModel:
    def __init__(self):
        self.models = list(MODES)

    @property
    def id(self):
        return STATE["mode"]

    @property
    def name(self):
        return MODES[STATE["mode"]]

    def __str__(self):
        return self.name


class JetsonClocks:
    @property
    def status(self):
        return "running" if STATE["clocks"] else "inactive"

    def __bool__(self):
        return STATE["clocks"]


class Fan:
    def __init__(self):
        self._data = {"pwmfan": None}

    def __len__(self):
        return len(self._data)

    def keys(self):
        return self._data.keys()

    def all_profiles(self, name):
        if name not in self._data:
            raise JtopException('Fan "{}" does not exist'.format(name))
        return ["quiet", "cool", "manual"]

    @property
    def profile(self):
        return STATE["profile"]

    @profile.setter
    def profile(self, value):
        _log(control="fan.profile", value=value)
        _set(profile=value, **({} if value == "manual" else {"speed": AUTO_SPEED}))

    @property
    def speed(self):
        return STATE["speed"]

    @speed.setter
    def speed(self, value):
        _log(control="fan.speed", value=value, profile=STATE["profile"])
        if STATE["profile"] == "manual":  # nvfancontrol overrides a manual speed otherwise
            _set(speed=float(value))


class jtop:
    def __init__(self, interval=1.0):
        self._nvp = NVPModel()
        self.fan = Fan()
        self.board = {"platform": {"Machine": "aarch64", "System": "Linux", "Distribution": "Ubuntu 20.04 focal",
                                   "Release": "5.10.120-tegra", "Python": "3.8.10"},
                      "hardware": {"Model": "NVIDIA Jetson Xavier NX Developer Kit",
                                   "Module": "NVIDIA Jetson Xavier NX (Developer kit)", "SoC": "tegra194",
                                   "CUDA Arch BIN": "7.2", "L4T": "35.4.1", "Jetpack": "5.1.2"},
                      "libraries": {"CUDA": "11.4.315", "cuDNN": "8.6.0.166", "TensorRT": "8.5.2.2"}}

    def __enter__(self):
        _log(control="open")
        return self

    def __exit__(self, *exc):
        return False

    def ok(self):
        return True

    @property
    def nvpmodel(self):
        return self._nvp

    @nvpmodel.setter
    def nvpmodel(self, value):
        _log(control="nvpmodel", value=value)
        index = value if isinstance(value, int) else MODES.index(value)
        if MODES[index] in FAIL_MODES:
            return  # e.g. a mode that needs a reboot: it never shows
        _set(mode=index, clocks=False)  # a new power mode resets the pinned clocks

    @property
    def jetson_clocks(self):
        return JetsonClocks()

    @jetson_clocks.setter
    def jetson_clocks(self, value):
        _log(control="jetson_clocks", value=bool(value))
        _set(clocks=bool(value))
