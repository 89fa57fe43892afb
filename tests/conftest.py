import os
import signal
import tempfile

# Tests run on the CPU whatever the machine has, with TensorFlow quiet.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A script's background job starts with SIGINT ignored, and an ignored signal stays ignored across exec: the
# train.py of the Ctrl-C tests would then rightly ignore the SIGINT they send it (genjax.stopping). The suite's
# processes take SIGINT as a terminal's foreground job does; their children start with its default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
  signal.signal(signal.SIGINT, signal.default_int_handler)

# This suite spends most of its time compiling tiny programs, not running
# them, and its train.py/sample.py subprocesses (which inherit this
# environment) compile the same ones again. So: LLVM's optimisation off (most
# tests compile more than they run, so the suite is faster without it, though a
# U-Net's loop run alone is faster with it; the numbers are IEEE float32 either
# way), and one persistent compilation cache shared by every process of the
# run, for programs that take 0.2 s or more to compile (every step and eval
# function; not the ops of eager code, which would fill it with
# thousands of entries and run slower for it). A bounded cache makes JAX lock
# it (filelock), so no process reads an entry while another writes it.
_FLAG = "--xla_backend_optimization_level=0"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
# genjax.quality caches reference features here: one directory for the run's processes, never the user's (a
# GENJAX_CACHE of the user's own would get the features of tfds.testing.mock_data's images).
os.environ["GENJAX_CACHE"] = os.path.join(tempfile.gettempdir(), "genjax-tests-cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "genjax-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))
