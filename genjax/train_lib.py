"""The family-agnostic training loop: `train_and_evaluate(config, workdir)`.

The loop knows a family only through `genjax.models.family`: the registry builds it from the config, and it
provides the `Family` protocol (init, train_step, eval_params, sample, evaluate, visuals). On a 2-D mixture the
loop also scores and draws the family's samples (`genjax.evaluation`, which sample.py shares). The loop owns
everything that touches the disk.
"""

import collections
import contextlib
import errno
import itertools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from genjax import build, checkpoint, data, evaluation, memory, parallel, paths, quality, stopping, utilization
from genjax import random as grandom
from genjax.errors import DiskFullError, NonFiniteLossError, Preempted, UserError, disk_full_words
from genjax.models import family as family_lib
from genjax.workdir import RunLock, check_resumable, check_workdir, prepare_workdir, save_config
from genjax.writers import MetricWriter, has_row, last_row

def _format(metrics: dict) -> str:
  return "  ".join(f"{k} {float(v):.4g}" for k, v in metrics.items())


def _kept(last_saved: int | None) -> str:
  if last_saved is None:
    return "no checkpoint was written"
  return f"checkpoint of step {last_saved} left intact"


def first_non_finite(first: int, metrics: dict) -> tuple[int, str, float] | None:
  """(step, name, value) of the first NaN or infinity among the loss and the other metrics (gradient norms
  too: a finite loss with non-finite gradients would save non-finite weights); None if all are finite.

  `metrics` are those of step `first`, or of steps `first, first + 1, ...` along a leading axis.
  """
  rows = {name: np.atleast_1d(np.asarray(value, np.float64)) for name, value in metrics.items()}
  for i in range(max((len(v) for v in rows.values()), default=0)):
    for name in sorted(rows, key=lambda k: (k != "loss", k)):
      value = rows[name][i]
      if not np.isfinite(value):
        return first + i, name, float(value)
  return None


def _last_row(metrics: dict, stacked: bool) -> dict:
  return {name: (value[-1] if stacked else value) for name, value in metrics.items()}


def call_plan(start: int, num_steps: int, per_call: int, boundaries: tuple[int, ...]):
  """(first step, steps) of each compiled call: `per_call` steps, cut at every multiple of `boundaries`.

  Logging, checkpoints and evaluations fall on multiples of their intervals,
  and a run resumed from any step lines up with them again.
  """
  step = start
  while step < num_steps:
    stop = min([num_steps, step + per_call] + [(step // every + 1) * every for every in boundaries])
    yield step + 1, stop - step
    step = stop


def prefetch(iterator, size: int = 2):
  """`iterator`, `size` items ahead: the next batch is on its devices before the step that needs it starts."""
  queue = collections.deque()
  for item in iterator:
    queue.append(item)
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the last evaluation.

  Everything that can be checked is checked before the first write: the
  config, the devices, the workdir, the data (a batch larger than the split,
  a missing split), the step's memory (from its compiled program) and the
  checkpoint to resume from. Only then is the workdir created and
  `config.json` written (atomically). The workdir is locked for the run's
  life (`genjax.workdir.RunLock`): a second run on it is refused. A resume
  keeps what the weights were trained with (`genjax.workdir.pinned_fields`).
  A run whose checkpoint reaches `num_steps` is complete: nothing is
  trained, evaluated or written, and its last evaluation in metrics.jsonl
  is returned ({} if it has none).

  Raises:
    UserError: bad config, workdir, data or checkpoint, a model too large for the devices, a resume that changes
      a pinned field, a workdir in use by another run (nothing is written) or taken over by one (nothing more).
    NonFiniteLossError: a step's loss, or the weights to be saved, were NaN or infinite (the last good
      checkpoint, which is finite, is kept).
    Preempted: SIGTERM, Ctrl-C (or a preemption notice) arrived; a checkpoint of the current step was saved.
  """
  build.validate(config)
  par = parallel.DataParallel(config.parallel, config.num_devices, config.precision)
  par.check_batch(config.batch_size, config.model.get("pack", 1))  # PacGAN's groups stay on one device
  workdir = check_workdir(workdir)
  with contextlib.ExitStack() as locked:
    # One run per workdir, from the first read of its checkpoints to the last write; process 0 holds it for all.
    lock = RunLock(workdir) if parallel.is_chief() and paths.isdir(workdir) else None
    if lock is not None:
      locked.callback(lock.release)
    return _train_and_evaluate(config, workdir, par, lock, locked)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, par: parallel.DataParallel,
                        lock: RunLock | None, locked: contextlib.ExitStack) -> dict[str, float]:
  """`train_and_evaluate` once its workdir is locked (`lock`, or None where it does not exist yet)."""
  check_resumable(workdir, config)
  if config.eval.quality_samples:
    quality.check_inception_weights(config.eval.inception_weights, "eval.inception_weights")
  family = build.family(config, par)
  keys = grandom.streams(config.seed)
  chief = parallel.is_chief()  # only process 0 writes logs, metrics and pictures
  ckpt_dir = paths.join(workdir, "checkpoints")
  if paths.exists(ckpt_dir) and not paths.isdir(ckpt_dir):
    raise UserError(f"checkpoint: {ckpt_dir} is a file, not a directory of checkpoints; move it away, or use a"
                    " new --workdir")

  with contextlib.ExitStack() as cleanup:
    reading = cleanup.enter_context(contextlib.ExitStack())  # closed once restored, or on the way out
    # Read-only until every check has passed: it neither creates the directory nor removes half-written steps.
    reader = checkpoint.Checkpointer(ckpt_dir, config.keep_checkpoints, read_only=True) if paths.isdir(
        ckpt_dir) else None
    if reader is not None:
      reading.callback(reader.close)
    start = (reader.latest_step() if reader is not None else None) or 0
    if start and not paths.isfile(paths.join(workdir, "config.json")):
      # Without it nothing says what the checkpoints were trained with, and a resume could not keep it.
      raise UserError(f"--workdir: {workdir!r} holds checkpoints but no config.json, which says what they were"
                      " trained with; put it back (sample.py needs it too), or use a new --workdir")
    # A checkpoint's step whose evaluation was due but not written (stopped or out of disk while evaluating):
    # the resume evaluates it first. Only process 0 writes metrics, so only it can tell; every process must
    # decide the same (whether the run is complete; the evaluation's calls), so it tells the others.
    missing_evaluation = parallel.from_chief(bool(
        chief and start and (start % config.eval_every == 0 or start == config.num_steps)
        and not has_row(workdir, "eval", start)))
    if start and start >= config.num_steps and not (start == config.num_steps and missing_evaluation):
      # Nothing to train: complete, and left exactly as it is, if its newest checkpoint reads (sample.py's).
      reader.saved_metadata(start)
      logging.info("the run in %s is complete: its checkpoint of step %d reaches num_steps %d; nothing was changed"
                   " (python sample.py --workdir=%s evaluates it)", workdir, start, config.num_steps, workdir)
      return last_row(workdir, "eval", start)

    ds = config.dataset
    # One batch per step: a resumed run skips the batches already trained on.
    train_iter = data.train_iterator(
        ds.name, batch_size=config.batch_size, seed=grandom.integer_seed(keys.data),
        data_dir=ds.data_dir, download=ds.download, skip_batches=start, train_examples=ds.train_examples)
    held = evaluation.held_out(ds, config.eval.num_examples, family.num_classes)
    eval_images, eval_labels = held.images, held.labels
    first_batch = next(train_iter)
    train_iter = itertools.chain([first_batch], train_iter)

    per_call = config.steps_per_call
    abstract_state = par.abstract_state(family.init, keys.init)
    if per_call == 1:
      step_fn = memory.AheadOfTime(par.compile_step(family.train_step))
      step_key = par.step_keys(keys.train)  # the key of step s is fold_in(train, s - 1), placed for the step

      def compile_first():
        return step_fn.compile(abstract_state, par.put_batch(first_batch), step_key(start))

      def train_call(state, first, device_batch):
        return step_fn(state, device_batch, step_key(first - 1))
    else:
      steps_fn = memory.AheadOfTime(par.compile_steps(family.train_step))
      train_key = par.replicate(keys.train)

      def compile_first():
        return steps_fn.compile(abstract_state, par.put_batches([first_batch] * per_call), train_key,
                                par.replicate(np.uint32(start)))

      def train_call(state, first, device_batches):
        return steps_fn(state, device_batches, train_key, par.replicate(np.uint32(first - 1)))
    eval_params_fn = jax.jit(family.eval_params, static_argnums=2)
    params_key = grandom.eval_params_key(keys.eval)
    default_weights, *other_weights = family_lib.get(config.family).weights
    evaluate_fn = jax.jit(family.evaluate)
    visuals_fn = jax.jit(family.visuals)
    sample_fn = jax.jit(family.sample, static_argnums=2)
    unscale_fn = jax.jit(family.unscale)
    inpaint_fn = evaluation.inpaintings_of(family)

    memory.check_memory(compile_first(), par, config.batch_size)
    # The FLOPs of one step, counted once (genjax.utilization): of the one-step program, which a call of
    # several steps repeats; pmap's (and shard_map's) program is one device's.
    one_step = step_fn if per_call == 1 else memory.AheadOfTime(par.compile_step(family.train_step))
    step_flops = utilization.flops_of(one_step.lower(abstract_state, par.put_batch(first_batch),
                                                     par.step_keys(keys.train)(start)))
    step_flops = None if step_flops is None else step_flops * par.program_copies
    peak = utilization.peak_tflops(par.describe()["device_kind"], config.precision, config.peak_tflops)
    # The evaluation's programs, compiled now (jit keeps them for the calls): their memory is checked like the
    # step's, before anything is written, rather than found short at the first evaluation.
    params_shape = jax.eval_shape(lambda state, key: family.eval_params(state, key, default_weights),
                                  jax.eval_shape(family.init, keys.init), params_key)
    programs = {("eval.batch_size", f"evaluating {config.eval.batch_size} held-out examples at once",
                 f"a smaller eval.batch_size than {config.eval.batch_size}"): evaluate_fn.lower(
        params_shape, jax.ShapeDtypeStruct((config.eval.batch_size, *eval_images.shape[1:]), eval_images.dtype),
        keys.eval, offset=0, **({} if eval_labels is None else {
            "labels": jax.ShapeDtypeStruct((config.eval.batch_size,), eval_labels.dtype)})).compile()}
    if config.eval.quality_samples and quality.network(ds.name, config.eval.inception_weights) is not None:
      batch = quality.sample_batch(config.eval.quality_samples)
      programs[("eval.quality_samples", f"drawing samples {batch} at a time",
                "a smaller model, or 0 (no sample-quality numbers)")] = sample_fn.lower(
          params_shape, keys.eval, batch,
          *([] if eval_labels is None else [jax.ShapeDtypeStruct((batch,), jnp.int32)])).compile()
    state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(abstract_state))
    state_bytes //= par.num_local_devices if config.parallel == "pmap" else 1  # pmap's state has a device axis
    memory.check_evaluation_memory(programs, state_bytes, par)

    state = par.init(family.init, keys.init)
    if start:
      state = reader.restore(start, state)
      logging.info("resumed from the checkpoint of step %d in %s", start, workdir)
    reading.close()

    # Every check has passed: from here on the workdir is written.
    devices = par.describe()
    logging.info("training on %d %s device%s (%s) in %d process%s, parallel=%s", devices["devices"],
                 devices["platform"], "s" * (devices["devices"] > 1), devices["device_kind"], devices["processes"],
                 "es" * (devices["processes"] > 1), devices["parallel"])
    prepare_workdir(workdir)
    if chief and lock is None:  # a new workdir: lock it before the first write
      lock = RunLock(workdir)
      locked.callback(lock.release)
      if paths.exists(paths.join(workdir, "config.json")) or paths.exists(ckpt_dir):
        raise UserError(f"--workdir: another run wrote into {workdir!r} while this one checked its input; run the"
                        " same command again to resume it, or use another --workdir")
    if chief:
      lock.announce()
      save_config(workdir, config)
    # Whatever ends the run (the last step, a non-finite loss, a preemption, an interrupt), the asynchronous
    # save of the last good state completes before the manager closes.
    ckpt = checkpoint.Checkpointer(ckpt_dir, config.keep_checkpoints)
    # From here on SIGTERM and Ctrl-C only ask to stop, until the last save is complete (callbacks run last-in
    # first-out).
    stop = stopping.StopRequest(ckpt)
    cleanup.callback(stop.close)
    cleanup.callback(ckpt.close)

    state = par.to_run(state)

    def device_batches():
      for first, n in call_plan(start, config.num_steps, per_call,
                                (config.log_every, config.checkpoint_every, config.eval_every)):
        local = [next(train_iter) for _ in range(n)]
        yield first, n, par.put_batch(local[0]) if per_call == 1 else par.put_batches(local)

    # Rows of steps after the checkpoint resumed from were logged by a run that did not save them: they go.
    writer = MetricWriter(workdir, resume_step=start) if chief else None
    if writer is not None:
      cleanup.callback(writer.close)
      # What this (part of the) run trained on, and the FLOPs of its step.
      writer.write_info(start, "start", {**par.describe(), "precision": config.precision, "step_flops": step_flops,
                                         "peak_tflops": peak})
    samples_dir = paths.join(workdir, "samples")

    def evaluate(step: int) -> dict[str, float]:
      # Every process evaluates its own local copy (no collectives, the same numbers), so none of them
      # waits long for another at the next step or at shutdown; process 0 writes. A stop request ends the
      # computing at once; the writing, once begun, is finished (no half row, no half picture).
      with stop.abortable():
        local = par.local_copy(state)
        params = eval_params_fn(local, params_key, default_weights)
        result = evaluation.evaluate_dataset(evaluate_fn, params, eval_images, keys.eval, config.eval.batch_size,
                                             eval_labels)
        bad = first_non_finite(step, result)
        if bad is not None:  # the held-out loss of weights whose training losses were all finite
          raise diverged(f"non-finite held-out {bad[1]} {bad[2]} of the weights of step {step}", step, last_saved)
        # The samples' numbers of every weights the family has (a GAN's EMA and raw generators): the default's
        # plain, the others' with their suffix (fid_raw), so that a user sees what the EMA buys.
        for weights in (default_weights, *other_weights):
          these = params if weights == default_weights else eval_params_fn(local, params_key, weights)
          suffix = "" if weights == default_weights else f"_{weights}"
          measured = evaluation.sample_numbers(sample_fn, unscale_fn, these, keys.eval, ds,
                                               config.eval.quality_samples, held=held,
                                               inception_weights=config.eval.inception_weights,
                                               batch_size=config.eval.batch_size,
                                               # inpainting costs many samplers' runs: the default weights' only
                                               inpaint_fn=inpaint_fn if weights == default_weights else None)
          result.update({f"{name}{suffix}": value for name, value in measured.items()})
        grids = evaluation.visual_grids(
            visuals_fn, params, keys.sample, eval_images, eval_labels=eval_labels,
            extra=evaluation.point_grids({"samples": sample_fn}, params, keys.sample, ds.name)) if chief else {}
      if chief:
        # The pictures first, the row last: a row in metrics.jsonl says that the evaluation of its step is
        # complete, and a resume evaluates again a checkpoint's step that has none (`missing_evaluation`).
        try:
          evaluation.write_grids(grids, samples_dir, suffix=f"_{step:07d}")
          writer.write(step, "eval", result)
        except OSError as e:
          if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
          raise DiskFullError(f"{disk_full_words(e)} while writing the evaluation of step {step};"
                              f" {_kept(last_saved)}: free space, then run the same command again (it evaluates"
                              f" step {step} again)") from e
        logging.info("eval step %d  %s", step, _format(result))
      return result

    def require_finite_state(step: int, last_saved: int | None) -> None:
      # The loss of step s is that of the weights before its update: only the state itself tells whether
      # the update (an infinite step size, an overflow in Adam) left every weight finite.
      bad = checkpoint.non_finite_leaf(state)
      if bad is not None:
        raise NonFiniteLossError(f"non-finite weights ({bad}) after step {step}; {_kept(last_saved)}")

    def save(step: int) -> bool:
      return ckpt.save(step, par.to_canonical(state))

    def diverged(what: str, weights_step: int, last_saved: int | None) -> NonFiniteLossError:
      # `what` was computed with the weights after step `weights_step` (the loss of step s with those after
      # step s - 1). A checkpoint of weights that give a non-finite loss is of no use to a resume or to
      # sample.py, so it goes when a complete checkpoint before it stays. (A bad batch gives a non-finite loss
      # too: then the resume from the checkpoint before retrains the removed step to the same weights.)
      if last_saved is None or last_saved != weights_step:
        return NonFiniteLossError(f"{what}; {_kept(last_saved)}")
      ckpt.wait()
      older = [s for s in ckpt.all_steps() if s < last_saved]
      if not older:
        return NonFiniteLossError(f"{what}; the checkpoint of step {last_saved}, the only one, holds the weights"
                                  " that gave it: train again with another config in a new --workdir")
      ckpt.delete(last_saved)
      return NonFiniteLossError(f"{what}; removed the checkpoint of step {last_saved}, whose weights it was computed"
                                f" with; {_kept(max(older))}")

    def check_finite(first: int, metrics: dict, last_saved: int | None) -> None:
      bad = first_non_finite(first, metrics)
      if bad is not None:
        step, name, value = bad
        raise diverged(f"non-finite {name} {value} at step {step}", step - 1, last_saved)

    last_saved = start or None
    result: dict[str, float] | None = None  # the last evaluation's numbers ({} for a GAN on images)
    if missing_evaluation:
      logging.info("evaluating step %d first: its evaluation was not written", start)
      try:
        result = evaluate(start)
      except stopping.Abort:
        raise Preempted(start, interrupted=stop.interrupted, complete=start >= config.num_steps) from None
    pending = None  # (first step, metrics on device) of the last call: fetched one call late, so the host never waits
    t_log, step_log = time.perf_counter(), start
    for first, n, batch in prefetch(device_batches()):
      step = first + n - 1  # the last step of this call
      t0 = time.perf_counter()
      state, metrics = train_call(state, first, batch)
      if lock is not None:  # a bucket's lock taken over by another run: nothing more is written here
        lock.check()
      if first == start + 1:
        jax.block_until_ready(metrics)
        logging.info("first call (%d step%s, compiled before) took %.2f s", n, "s" * (n > 1), time.perf_counter() - t0)
      if pending is not None:
        check_finite(pending[0], par.fetch(pending[1]), last_saved)
      pending = (first, metrics)
      stop_now = stop.requested(range(first, step + 1))
      log_now = step % config.log_every == 0 or step == config.num_steps
      save_now = step % config.checkpoint_every == 0 or step == config.num_steps or stop_now
      eval_now = step % config.eval_every == 0 or step == config.num_steps
      if log_now or save_now or eval_now:
        # Waits for this call: done only when logging, saving or evaluating needs its values,
        # and only a state whose losses and weights are all finite is ever saved or evaluated.
        fetched = par.fetch(metrics)
        check_finite(first, fetched, last_saved)
        fetched = _last_row(fetched, per_call > 1)
        pending = None
      if save_now or eval_now:
        require_finite_state(step, last_saved)

      if log_now and chief:
        now = time.perf_counter()
        rate = (step - step_log) / max(now - t_log, 1e-9)
        t_log, step_log = now, step
        speed = utilization.rates(step_flops, rate, peak, par.num_devices)
        writer.write(step, "train", {**fetched, **speed})
        eta = (config.num_steps - step) / max(rate, 1e-9)
        logging.info("step %d/%d  %s  |  %s  eta %s", step, config.num_steps, _format(fetched),
                     utilization.describe(speed), time.strftime("%H:%M:%S", time.gmtime(eta)))
      paused = time.perf_counter()  # saves and evaluations are not in the training rate
      if save_now and save(step):
        last_saved = step
      if stop_now:
        raise Preempted(step, interrupted=stop.interrupted)
      if eval_now:
        try:
          result = evaluate(step)
        except stopping.Abort:
          if last_saved != step and save(step):
            last_saved = step
          raise Preempted(step, interrupted=stop.interrupted, complete=step == config.num_steps) from None
      t_log += time.perf_counter() - paused
  logging.info("wrote checkpoints, metrics.jsonl, TensorBoard events and sample grids to %s", workdir)
  return result
