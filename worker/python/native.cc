// sparta._native: the Python extension behind sparta.Worker (built with
// pybind11 when Debian's pybind11-dev is present). It wraps a driven
// sparta::Worker (worker/worker.h): the same registration, input shares,
// clocks, checkpoint pauses, failover and reports as sparta-worker, with the
// model's computation in Python. sparta/worker.py is the Python face; this
// file only converts: NumPy arrays in and out (batches and pulled rows are
// not copied), absl::Status to sparta.SpartaError, and the GIL released
// around every wait on the network or the input.
//
// A Worker object is used from one Python thread at a time (the GIL and a
// mutex of its own keep it so); futures may be waited on from any thread.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/termination.h"
#include "worker/dense_cache.h"
#include "worker/driven_steps.h"
#include "worker/eval_metrics.h"
#include "worker/plugins.h"
#include "worker/worker.h"

namespace py = pybind11;

namespace sparta {
namespace {

// sparta.SpartaError's subclass for errors from Sparta's C++ side.
py::object* g_error = nullptr;

[[noreturn]] void Raise(const absl::Status& status) {
  PyErr_SetString(g_error->ptr(), std::string(status.message()).c_str());
  throw py::error_already_set();
}

void Check(const absl::Status& status) {
  if (!status.ok()) Raise(status);
}

// The tables a Python model declares; its computation is in Python.
class DeclaredModel : public Model {
 public:
  explicit DeclaredModel(std::vector<TableDecl> tables) : tables_(std::move(tables)) {}
  std::vector<TableDecl> Tables() const override { return tables_; }

 private:
  const std::vector<TableDecl> tables_;
};

TableDecl TableFromDict(const py::dict& d) {
  TableDecl t;
  t.name = d["name"].cast<std::string>();
  const std::string kind = d.contains("kind") ? d["kind"].cast<std::string>() : "sparse";
  if (kind != "sparse" && kind != "dense") {
    throw py::value_error(absl::StrCat("table '", t.name, "': kind must be 'sparse' or 'dense', not '", kind, "'"));
  }
  t.kind = kind == "dense" ? TableKind::kDense : TableKind::kSparse;
  if (d.contains("dim")) t.dim = d["dim"].cast<uint32_t>();
  if (d.contains("size")) t.dense_size = d["size"].cast<uint64_t>();
  if (t.kind == TableKind::kDense && t.dense_size == 0) {
    throw py::value_error(absl::StrCat("dense table '", t.name, "' needs a size > 0"));
  }
  if (t.kind == TableKind::kSparse && t.dim == 0) {
    throw py::value_error(absl::StrCat("sparse table '", t.name, "' needs a dim > 0"));
  }
  if (d.contains("initializer")) {
    const std::string init = d["initializer"].cast<std::string>();
    if (init == "zero") t.initializer.type = InitializerDecl::kZero;
    else if (init == "uniform") t.initializer.type = InitializerDecl::kUniform;
    else if (init == "normal") t.initializer.type = InitializerDecl::kNormal;
    else if (init == "constant") t.initializer.type = InitializerDecl::kConstant;
    else throw py::value_error(absl::StrCat("table '", t.name, "': unknown initializer '", init,
                                            "' (zero, uniform, normal, constant)"));
  }
  if (d.contains("scale")) t.initializer.scale = d["scale"].cast<float>();
  if (d.contains("seed")) t.initializer.seed = d["seed"].cast<uint64_t>();
  if (d.contains("optimizer")) t.optimizer.name = d["optimizer"].cast<std::string>();
  if (d.contains("learning_rate")) t.optimizer.learning_rate = d["learning_rate"].cast<double>();
  return t;
}

// A NumPy view of `data` that keeps `owner` alive and cannot be written.
template <typename T>
py::array View(const std::shared_ptr<const Batch>& owner, const T* data, std::vector<py::ssize_t> shape) {
  auto* keep = new std::shared_ptr<const Batch>(owner);
  py::capsule base(keep, [](void* p) { delete static_cast<std::shared_ptr<const Batch>*>(p); });
  py::array a(py::dtype::of<T>(), std::move(shape), {}, data, base);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

// One batch, as NumPy arrays over the worker's own memory.
struct PyBatch {
  std::shared_ptr<const Batch> batch;
  py::ssize_t n() const { return batch->size; }
};

using Indexes = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;

// Where each feature of a batch goes when its rows are pooled per bag (one
// bag per example, or per example and field with num_fields > 0), given the
// batch's offsets, slots, fields and values: (rows, bags), with rows[i] the
// feature's row (its slot in unique_keys) and bags[i] its bag. One pass
// here: the same in NumPy took a good part of a small MLP's step outside
// PyTorch (sparta.torch.EmbeddingBag).
py::tuple Pooling(const Indexes& offsets, const Indexes& slots, const Indexes& fields,
                  const py::array_t<float, py::array::c_style | py::array::forcecast>& values, int num_fields) {
  const size_t n = static_cast<size_t>(slots.size());
  if (offsets.size() < 1 || static_cast<size_t>(offsets.at(offsets.size() - 1)) != n ||
      static_cast<size_t>(fields.size()) != n || static_cast<size_t>(values.size()) != n) {
    throw py::value_error("pooling: offsets must end at the number of features, and slots, fields and values "
                          "have one entry per feature");
  }
  py::array_t<int64_t> rows(static_cast<py::ssize_t>(n)), bags(static_cast<py::ssize_t>(n));
  int64_t* row = rows.mutable_data();
  int64_t* bag = bags.mutable_data();
  const uint32_t* offset = offsets.data();
  for (py::ssize_t e = 0; e + 1 < offsets.size(); ++e) {
    for (uint32_t i = offset[e]; i < offset[e + 1] && i < n; ++i) {
      row[i] = slots.data()[i];
      bag[i] = num_fields > 0 ? e * num_fields + fields.data()[i] : e;
    }
  }
  return py::make_tuple(rows, bags);
}

using Positions = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Weights = py::array_t<float, py::array::c_style | py::array::forcecast>;

// outs[to[i]] += values[i] * srcs[from[i]], where a row of `srcs` is
// their rows side by side (all have the same number of rows) and a row of
// the outputs is theirs side by side, cut into `out_widths` columns; the
// outputs are `out_rows` rows of zeros to start with. It is pooling (srcs:
// a pull's rows, from: the features' rows, to: their bags; cut, e.g., into
// a wide weight and a deep embedding) and its gradient (the cut parts'
// gradients, from bags to rows), one pass each, where PyTorch took an
// index and an index_put forward, both again with zero-filled tensors in
// backward, and a torch.cat for the gradient of a split (a sixth of the
// DLRM example's operator time). Sums run in feature order, as torch's
// index_add and accumulating index_put do, and give the same floats.
py::list ScatterAdd(const std::vector<Weights>& srcs, const Positions& from, const Positions& to,
                    const Weights& values, int64_t out_rows, const std::vector<int64_t>& out_widths) {
  const int64_t n = from.size();
  if (srcs.empty() || from.ndim() != 1 || to.size() != n || values.size() != n || out_rows < 0) {
    throw py::value_error("scatter_add: from, to and values have one entry per feature, and srcs are arrays");
  }
  const int64_t in_rows = srcs[0].ndim() == 2 ? srcs[0].shape(0) : -1;
  // Runs of columns that go from one source array to one output together.
  struct Run {
    const float* src;
    int64_t src_stride;
    size_t out;
    int64_t out_column, columns;
  };
  std::vector<Run> runs;
  int64_t in_width = 0, out_width = 0;
  for (const Weights& src : srcs) {
    if (src.ndim() != 2 || src.shape(0) != in_rows) throw py::value_error("scatter_add: srcs are 2-d, of equal rows");
    in_width += src.shape(1);
  }
  for (int64_t w : out_widths) {
    if (w < 0) throw py::value_error("scatter_add: a negative width");
    out_width += w;
  }
  if (in_width != out_width) {
    throw py::value_error(absl::StrCat("scatter_add: srcs have ", in_width, " columns, the outputs ", out_width));
  }
  {
    size_t part = 0;
    int64_t part_start = 0;
    int64_t column = 0;
    for (const Weights& src : srcs) {
      for (int64_t c = 0; c < src.shape(1);) {
        while (part < out_widths.size() && column >= part_start + out_widths[part]) part_start += out_widths[part++];
        const int64_t take = std::min(src.shape(1) - c, part_start + out_widths[part] - column);
        runs.push_back({src.data() + c, src.shape(1), part, column - part_start, take});
        c += take;
        column += take;
      }
    }
  }
  py::list outs;
  std::vector<float*> out_data;
  for (int64_t w : out_widths) {
    py::array_t<float> out({static_cast<py::ssize_t>(out_rows), static_cast<py::ssize_t>(w)});
    std::fill(out.mutable_data(), out.mutable_data() + out_rows * w, 0.0f);
    out_data.push_back(out.mutable_data());
    outs.append(out);
  }
  const int64_t* f = from.data();
  const int64_t* t = to.data();
  const float* v = values.data();
  for (int64_t i = 0; i < n; ++i) {
    if (f[i] < 0 || f[i] >= in_rows || t[i] < 0 || t[i] >= out_rows) {
      throw py::index_error(absl::StrCat("scatter_add: feature ", i, " goes from row ", f[i], " of ", in_rows,
                                         " to row ", t[i], " of ", out_rows));
    }
    const float w = v[i];
    for (const Run& run : runs) {
      const float* in = run.src + f[i] * run.src_stride;
      float* dst = out_data[run.out] + t[i] * out_widths[run.out] + run.out_column;
      for (int64_t c = 0; c < run.columns; ++c) dst[c] += w * in[c];
    }
  }
  return outs;
}

using Keys = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Counts = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;

// Requests in flight, one per table (a pull or push of several dense
// tables at once has one each). Waiting releases the GIL, and the time
// counts as the worker's network wait, as sparta-worker's does.
class Tickets {
 public:
  Tickets(DrivenSteps* steps, std::vector<KVClient::Ticket> tickets) : steps_(steps), tickets_(std::move(tickets)) {}

  void Wait() const {
    absl::Status status;
    {
      py::gil_scoped_release release;
      for (const KVClient::Ticket& t : tickets_) {
        status.Update(steps_->Wait(t));
      }
    }
    Check(status);
  }
  bool Done() const {
    return std::all_of(tickets_.begin(), tickets_.end(), [](const KVClient::Ticket& t) { return KVClient::Done(t); });
  }

 private:
  DrivenSteps* steps_;  // owned by the worker, which the future keeps alive
  std::vector<KVClient::Ticket> tickets_;
};

// A pull in flight: the rows land in `rows`; `keys` (the caller's array,
// or None for dense tables, whose keys the worker holds) stays alive until
// then.
struct PullFuture {
  Tickets tickets;
  py::object keys;
  Floats rows;
  py::array result() {
    tickets.Wait();
    return rows;
  }
  bool done() const { return tickets.Done(); }
};

struct PushFuture {
  Tickets tickets;
  void wait() { tickets.Wait(); }
  bool done() const { return tickets.Done(); }
};

// data.test for the lead worker.
struct TestInput {
  std::unique_ptr<DataLoader> loader;
  std::optional<PyBatch> next() {
    absl::StatusOr<std::unique_ptr<Batch>> batch;
    {
      py::gil_scoped_release release;
      batch = loader->Next();
    }
    if (!batch.ok()) Raise(batch.status());
    if (*batch == nullptr) return std::nullopt;
    return PyBatch{std::shared_ptr<const Batch>(*std::move(batch))};
  }
};

class PyWorker {
 public:
  PyWorker(const std::string& config_path, const std::vector<std::string>& overrides, int rank,
           const std::string& info_file)
      : rank_(rank), info_file_(info_file) {
    auto config = LoadConfig(config_path, overrides);
    Check(config.status());
    config_ = *std::move(config);
    InitLogging(rank >= 0 ? absl::StrCat("worker-", rank) : "worker", config_.log.level);
    // SIGTERM (preemption) asks the job for a final checkpoint, as it does
    // of sparta-worker, instead of killing the process (common/termination.h).
    static std::once_flag termination;
    std::call_once(termination, CatchTermination);
  }

  ~PyWorker() { hooks_live_.store(false, std::memory_order_release); }

  // The resolved configuration, one JSON object with dotted keys.
  std::string config_json() const { return ConfigToJson(config_); }

  // What the job's reader produces (fields, dense features), for tables
  // whose shape depends on it.
  std::pair<uint32_t, uint32_t> probe_schema() {
    auto make_reader = OpenReaders(config_);
    Check(make_reader.status());
    auto reader = (*make_reader)();
    Check(reader.status());
    const DataSchema schema = (*reader)->schema();
    return {schema.num_fields, schema.num_dense};
  }

  // Declares `tables` and joins the job; false if it had already finished training.
  bool open(const std::vector<py::dict>& tables) {
    std::lock_guard<std::mutex> lock(mu_);
    if (worker_ != nullptr) throw py::value_error("the worker is already open");
    std::vector<TableDecl> decls;
    for (const py::dict& d : tables) decls.push_back(TableFromDict(d));
    if (decls.empty()) throw py::value_error("a Python worker declares at least one table");
    worker_ = std::make_unique<Worker>(config_, rank_, info_file_, std::make_unique<DeclaredModel>(std::move(decls)));
    // Called, without the GIL, by the thread that completes a checkpoint's
    // pause: the caller's training thread (in next_batch) or, once it has
    // finished, the scheduler client's.
    worker_->SetCheckpointHook([this](const std::string& dir) -> absl::Status {
      // Going away (its destructor holds the GIL while the worker's threads stop).
      if (!hooks_live_.load(std::memory_order_acquire)) return absl::CancelledError("the worker is closing");
      py::gil_scoped_acquire gil;
      for (const py::function& save : checkpoint_hooks_) {
        try {
          save(dir);
        } catch (py::error_already_set& e) {
          return absl::InternalError(e.what());
        }
      }
      return absl::OkStatus();
    });
    absl::StatusOr<bool> training;
    {
      py::gil_scoped_release release;
      training = worker_->Open();
    }
    Check(training.status());
    if (*training) {
      auto steps = worker_->Steps();
      Check(steps.status());
      steps_ = *steps;
      for (const pb::TableSpec& t : steps_->tables()) {
        dense_keys_.push_back(t.kind() == pb::TableSpec::DENSE ? DenseBlockKeys(t) : std::vector<uint64_t>());
      }
    }
    return *training;
  }

  std::optional<PyBatch> next_batch() { return TakeBatch(&DrivenSteps::Next); }
  std::optional<PyBatch> peek() { return TakeBatch(&DrivenSteps::Peek); }

  // `out`: where the rows go, (len(keys), dim) float32, C-contiguous and
  // writable (e.g. a slice of rows of a larger array, so that two pulls
  // fill one array without a copy); none: a new array.
  PullFuture pull_async(size_t table, Keys keys, std::optional<py::array> out) {
    std::lock_guard<std::mutex> lock(mu_);
    DrivenSteps* steps = Steps();
    const pb::TableSpec& spec = Spec(table);
    if (keys.ndim() != 1) throw py::value_error("keys must be a 1-d array");
    const py::ssize_t n = keys.shape(0), dim = spec.dim();
    // Checked here, not converted: a converted copy would get the rows instead.
    if (out && (!out->dtype().is(py::dtype::of<float>()) || !(out->flags() & py::array::c_style) ||
                !out->writeable() || out->ndim() != 2 || out->shape(0) != n || out->shape(1) != dim)) {
      throw py::value_error(absl::StrCat("table '", spec.name(), "': out must be a writable, C-contiguous (", n,
                                         ", ", dim, ") float32 array"));
    }
    Floats rows = out ? py::reinterpret_borrow<Floats>(*out) : Floats({n, dim});
    KVClient::Ticket ticket =
        steps->Pull(table, {keys.data(), static_cast<size_t>(keys.shape(0))}, rows.mutable_data());
    return PullFuture{Tickets(steps, {std::move(ticket)}), std::move(keys), std::move(rows)};
  }

  // One pull of dense tables `tables` (indexes), one request each, into one
  // array: each table's values padded to whole blocks, in the order given.
  // A model pulls all its layers in one call (sparta.torch.DenseTables).
  PullFuture pull_dense_async(const std::vector<size_t>& tables) {
    std::lock_guard<std::mutex> lock(mu_);
    DrivenSteps* steps = Steps();
    Floats values(static_cast<py::ssize_t>(PaddedSize(tables)));
    std::vector<KVClient::Ticket> tickets;
    float* out = values.mutable_data();
    for (size_t t : tables) {
      tickets.push_back(steps->Pull(t, dense_keys_[t], out));
      out += dense_keys_[t].size() * Spec(t).dim();
    }
    return PullFuture{Tickets(steps, std::move(tickets)), py::none(), std::move(values)};
  }

  // One push of dense tables `tables`: `grads` laid out as pull_dense_async's
  // values (each table padded to whole blocks, in the order given).
  PushFuture push_dense(const std::vector<size_t>& tables, const Floats& grads) {
    std::lock_guard<std::mutex> lock(mu_);
    DrivenSteps* steps = Steps();
    const size_t size = PaddedSize(tables);
    if (static_cast<size_t>(grads.size()) != size) {
      throw py::value_error(absl::StrCat("push_dense: these tables take ", size,
                                         " gradient floats (each padded to whole blocks), got ", grads.size()));
    }
    std::vector<KVClient::Ticket> tickets;
    const float* in = grads.data();
    for (size_t t : tables) {
      const size_t n = dense_keys_[t].size() * Spec(t).dim();
      tickets.push_back(steps->Push(t, dense_keys_[t], {in, n}));
      in += n;
    }
    return PushFuture{Tickets(steps, std::move(tickets))};
  }

  py::array pull(size_t table, Keys keys) { return pull_async(table, std::move(keys), std::nullopt).result(); }

  PushFuture push(size_t table, Keys keys, Floats grads, std::optional<Counts> counts) {
    std::lock_guard<std::mutex> lock(mu_);
    DrivenSteps* steps = Steps();
    const pb::TableSpec& spec = Spec(table);
    const size_t n = keys.ndim() == 1 ? static_cast<size_t>(keys.shape(0)) : 0;
    if (keys.ndim() != 1) throw py::value_error("keys must be a 1-d array");
    if (static_cast<size_t>(grads.size()) != n * spec.dim()) {
      throw py::value_error(absl::StrCat("table '", spec.name(), "': ", n, " keys of dim ", spec.dim(), " need ",
                                         n * spec.dim(), " gradient floats, got ", grads.size()));
    }
    std::span<const uint32_t> count_span;
    if (counts) {
      if (static_cast<size_t>(counts->size()) != n) throw py::value_error("counts: one per key");
      count_span = {counts->data(), n};
    }
    KVClient::Ticket ticket =
        steps->Push(table, {keys.data(), n}, {grads.data(), static_cast<size_t>(grads.size())}, count_span);
    return PushFuture{Tickets(steps, {std::move(ticket)})};
  }

  void record_loss(double summed_loss) {
    std::lock_guard<std::mutex> lock(mu_);
    Steps()->RecordLoss(summed_loss);
  }

  TestInput open_test() {
    Steps();
    auto loader = worker_->OpenTest();
    Check(loader.status());
    return TestInput{*std::move(loader)};
  }

  // Ends training; the lead worker gives its evaluation of data.test.
  bool finish(std::optional<py::array_t<float>> probs, std::optional<py::array_t<float>> labels) {
    std::lock_guard<std::mutex> lock(mu_);
    std::optional<Trainer::EvalResult> eval;
    if (probs.has_value() != labels.has_value()) throw py::value_error("finish: give both probs and labels, or neither");
    if (probs) {
      if (probs->size() != labels->size()) throw py::value_error("finish: probs and labels differ in length");
      const std::span<const float> p(probs->data(), static_cast<size_t>(probs->size()));
      const std::span<const float> l(labels->data(), static_cast<size_t>(labels->size()));
      eval = Trainer::EvalResult{.auc = Auc(p, l), .logloss = MeanLogLoss(p, l), .rows = p.size()};
      if (!config_.eval.predictions_out.empty()) Check(WritePredictions(config_.eval.predictions_out, p));
    }
    absl::StatusOr<bool> finished;
    {
      py::gil_scoped_release release;
      finished = worker_->FinishSteps(eval ? &*eval : nullptr);
    }
    Check(finished.status());
    return *finished;
  }

  // The caller's own failure (an exception in the model) ends the job.
  void fail(const std::string& message) {
    if (worker_ == nullptr) return;  // not joined: nobody to tell
    py::gil_scoped_release release;
    (void)worker_->Fail(absl::InternalError(message));
  }

  // `save(folder)` writes state of the caller's into each checkpoint's
  // folder (sparta.Worker.on_checkpoint). Under the GIL, as is the list.
  void on_checkpoint(py::function save) { checkpoint_hooks_.push_back(std::move(save)); }
  // The checkpoint folder the job resumed from; "" if none.
  std::string restored_from() const { return worker_ != nullptr ? worker_->restored_from() : std::string(); }

  bool stopped() const { return worker_ != nullptr && worker_->Stopped(); }
  int rank() const { return worker_ != nullptr ? static_cast<int>(worker_->self().rank()) : rank_; }
  bool evaluates() const { return worker_ != nullptr && worker_->evaluates(); }
  std::vector<py::dict> tables() {
    std::vector<py::dict> out;
    for (const pb::TableSpec& t : Steps()->tables()) {
      py::dict d;
      d["name"] = t.name();
      d["kind"] = t.kind() == pb::TableSpec::DENSE ? "dense" : "sparse";
      d["dim"] = t.dim();
      d["size"] = t.dense_size();
      out.push_back(d);
    }
    return out;
  }

 private:
  // Next() or Peek(), without the GIL; a job stopped meanwhile (sparta-ctl
  // stop, SIGTERM) is no batch, not an error: the loop just ends.
  std::optional<PyBatch> TakeBatch(absl::StatusOr<std::shared_ptr<const Batch>> (DrivenSteps::*take)()) {
    std::lock_guard<std::mutex> lock(mu_);
    DrivenSteps* steps = Steps();
    absl::StatusOr<std::shared_ptr<const Batch>> batch;
    {
      py::gil_scoped_release release;
      batch = (steps->*take)();
    }
    if (!batch.ok()) {
      if (worker_->Stopped()) return std::nullopt;
      Raise(batch.status());
    }
    if (*batch == nullptr) return std::nullopt;
    return PyBatch{*std::move(batch)};
  }

  DrivenSteps* Steps() {
    if (steps_ == nullptr) throw py::value_error("the worker is not open (or the job had already ended)");
    return steps_;
  }
  const pb::TableSpec& Spec(size_t table) {
    const auto& tables = Steps()->tables();
    if (table >= tables.size()) throw py::index_error(absl::StrCat("no table ", table));
    return tables[table];
  }
  // The floats of dense tables `tables`, each padded to whole blocks.
  size_t PaddedSize(const std::vector<size_t>& tables) {
    size_t size = 0;
    for (size_t t : tables) {
      const pb::TableSpec& spec = Spec(t);
      if (spec.kind() != pb::TableSpec::DENSE) throw py::value_error(absl::StrCat("table '", spec.name(), "' is not dense"));
      size += dense_keys_[t].size() * spec.dim();
    }
    return size;
  }

  std::mutex mu_;
  const int rank_;
  const std::string info_file_;
  Config config_;
  std::vector<py::function> checkpoint_hooks_;  // under the GIL
  std::atomic<bool> hooks_live_{true};
  std::unique_ptr<Worker> worker_;
  DrivenSteps* steps_ = nullptr;  // owned by worker_
  // Per table, a dense table's block numbers (its keys; empty for a sparse
  // table): pulls read them until they complete, so they live as long as
  // the worker.
  std::vector<std::vector<uint64_t>> dense_keys_;
};

}  // namespace
}  // namespace sparta

PYBIND11_MODULE(_native, m) {
  using namespace sparta;
  m.doc() = "Sparta's C++ worker for Python (see sparta.Worker)";
  static py::object error = py::reinterpret_borrow<py::object>(PyErr_NewException(
      "sparta._native.Error", py::module_::import("sparta.jobs").attr("SpartaError").ptr(), nullptr));
  g_error = &error;
  m.attr("Error") = error;

  py::class_<PyBatch>(m, "Batch")
      .def_property_readonly("size", &PyBatch::n)
      .def_property_readonly("fresh_keys", [](const PyBatch& b) { return b.batch->fresh_keys; })
      // The same number for every view of one batch (peek() and batches() give two).
      .def_property_readonly("id", [](const PyBatch& b) { return reinterpret_cast<uintptr_t>(b.batch.get()); })
      .def_property_readonly("epoch", [](const PyBatch& b) { return b.batch->epoch; })
      .def_property_readonly("labels", [](const PyBatch& b) { return View(b.batch, b.batch->labels.data(), {b.n()}); })
      .def_property_readonly("dense", [](const PyBatch& b) {
        return View(b.batch, b.batch->dense.data(), {b.n(), static_cast<py::ssize_t>(b.batch->num_dense)});
      })
      .def_property_readonly("unique_keys", [](const PyBatch& b) {
        return View(b.batch, b.batch->unique_keys.data(), {static_cast<py::ssize_t>(b.batch->unique_keys.size())});
      })
      .def_property_readonly("offsets", [](const PyBatch& b) {
        return View(b.batch, b.batch->offsets.data(), {static_cast<py::ssize_t>(b.batch->offsets.size())});
      })
      .def_property_readonly("slots", [](const PyBatch& b) {
        return View(b.batch, b.batch->slots.data(), {static_cast<py::ssize_t>(b.batch->slots.size())});
      })
      .def_property_readonly("values", [](const PyBatch& b) {
        return View(b.batch, b.batch->values.data(), {static_cast<py::ssize_t>(b.batch->values.size())});
      })
      .def_property_readonly("fields", [](const PyBatch& b) {
        return View(b.batch, b.batch->fields.data(), {static_cast<py::ssize_t>(b.batch->fields.size())});
      });
  m.def("pooling", &Pooling, py::arg("offsets"), py::arg("slots"), py::arg("fields"), py::arg("values"),
        py::arg("num_fields") = 0);
  m.def("scatter_add", &ScatterAdd, py::arg("srcs"), py::arg("from"), py::arg("to"), py::arg("values"),
        py::arg("out_rows"), py::arg("out_widths"));

  py::class_<PullFuture>(m, "PullFuture")
      .def("result", &PullFuture::result)
      .def("done", &PullFuture::done);
  py::class_<PushFuture>(m, "PushFuture")
      .def("wait", &PushFuture::wait)
      .def("done", &PushFuture::done);
  py::class_<TestInput>(m, "TestInput").def("next", &TestInput::next);

  py::class_<PyWorker>(m, "Worker")
      .def(py::init<const std::string&, const std::vector<std::string>&, int, const std::string&>(),
           py::arg("config"), py::arg("overrides"), py::arg("rank"), py::arg("info_file") = "")
      .def_property_readonly("config_json", &PyWorker::config_json)
      .def("probe_schema", &PyWorker::probe_schema)
      .def("open", &PyWorker::open, py::arg("tables"))
      .def("next_batch", &PyWorker::next_batch)
      .def("peek", &PyWorker::peek)
      .def("pull", &PyWorker::pull, py::arg("table"), py::arg("keys"))
      // A future uses the worker's connection: it keeps the worker alive.
      .def("pull_async", &PyWorker::pull_async, py::arg("table"), py::arg("keys"), py::arg("out") = std::nullopt,
           py::keep_alive<0, 1>())
      .def("push", &PyWorker::push, py::arg("table"), py::arg("keys"), py::arg("grads"),
           py::arg("counts") = std::nullopt, py::keep_alive<0, 1>())
      .def("pull_dense_async", &PyWorker::pull_dense_async, py::arg("tables"), py::keep_alive<0, 1>())
      .def("push_dense", &PyWorker::push_dense, py::arg("tables"), py::arg("grads"), py::keep_alive<0, 1>())
      .def("record_loss", &PyWorker::record_loss)
      .def("open_test", &PyWorker::open_test)
      .def("finish", &PyWorker::finish, py::arg("probs") = std::nullopt, py::arg("labels") = std::nullopt)
      .def("fail", &PyWorker::fail)
      .def("on_checkpoint", &PyWorker::on_checkpoint, py::arg("save"))
      .def_property_readonly("restored_from", &PyWorker::restored_from)
      .def_property_readonly("stopped", &PyWorker::stopped)
      .def_property_readonly("rank", &PyWorker::rank)
      .def_property_readonly("evaluates", &PyWorker::evaluates)
      .def_property_readonly("tables", &PyWorker::tables);
}
