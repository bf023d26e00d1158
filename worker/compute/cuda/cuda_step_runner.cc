#include "worker/compute/cuda/cuda_step_runner.h"

#include <cuda_runtime_api.h>

#include <array>
#include <cstring>
#include <deque>

#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "worker/compute/batch_plan.h"
#include "worker/compute/cuda/cuda_backend.h"
#include "worker/compute/staging_layout.h"
#include "worker/compute/stream_plan.h"

namespace sparta {
namespace {

constexpr int kSlots = 2;

absl::Status CudaStatus(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CUDA: ", what, ": ", cudaGetErrorString(status)));
}

// A pinned host buffer and its device twin, grown on demand. Only grown
// while the slot is idle (collected), so nothing in flight uses the old one.
struct MirroredBuffer {
  char* host = nullptr;
  char* device = nullptr;
  size_t capacity = 0;

  absl::Status Reserve(size_t bytes) {
    if (bytes <= capacity) return absl::OkStatus();
    Free();
    bytes = bytes + bytes / 4;  // room to grow without reallocating every batch
    SPARTA_RETURN_IF_ERROR(CudaStatus(cudaHostAlloc(reinterpret_cast<void**>(&host), bytes, cudaHostAllocDefault), "cudaHostAlloc"));
    SPARTA_RETURN_IF_ERROR(CudaStatus(cudaMalloc(reinterpret_cast<void**>(&device), bytes), "cudaMalloc"));
    capacity = bytes;
    return absl::OkStatus();
  }
  void Free() {
    if (host != nullptr) cudaFreeHost(host);
    if (device != nullptr) cudaFree(device);
    host = device = nullptr;
    capacity = 0;
  }
};

// Everything one in-flight step owns.
struct Slot {
  BatchPlan plan;
  MirroredBuffer input, output;
  std::array<cudaEvent_t, 4> events{};  // by StreamEvent
  // Filled at submit, read at collect.
  uint64_t step = 0;
  bool want_grads = false;
  std::vector<float> labels;
  std::vector<size_t> grad_offsets, grad_floats;  // per table, in `output`
  size_t probs_offset = 0;
  std::vector<std::vector<float>> host_grads;  // fp16 copies widened for the push
};

class CudaStepRunner final : public StepRunner {
 public:
  CudaStepRunner(const Model* model, std::vector<RunnerTable> tables, const CudaRunnerOptions& options)
      : model_(model), tables_(std::move(tables)), options_(options) {}

  ~CudaStepRunner() override {
    for (cudaStream_t s : streams_) {
      if (s != nullptr) cudaStreamSynchronize(s);
    }
    for (Slot& slot : slots_) {
      slot.input.Free();
      slot.output.Free();
      for (cudaEvent_t e : slot.events) {
        if (e != nullptr) cudaEventDestroy(e);
      }
    }
    backend_.reset();
    for (cudaStream_t s : streams_) {
      if (s != nullptr) cudaStreamDestroy(s);
    }
  }

  absl::Status Init() {
    SPARTA_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options_.device), "cudaSetDevice"));
    for (cudaStream_t& s : streams_) SPARTA_RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"));
    for (Slot& slot : slots_) {
      for (size_t e = 1; e < slot.events.size(); ++e) {
        SPARTA_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&slot.events[e], cudaEventDisableTiming), "cudaEventCreate"));
      }
    }
    backend_ = std::make_unique<CudaBackend>();
    if (!backend_->error().empty()) return absl::InternalError("CUDA backend: " + backend_->error());
    backend_->set_stream(stream(Lane::kCompute));
    return absl::OkStatus();
  }

  const char* backend_name() const override { return "cuda"; }
  int max_depth() const override { return kSlots; }

  absl::Status Submit(uint64_t step, const Batch& batch, const std::vector<std::span<const float>>& params,
                      bool want_grads) override {
    if (in_flight_.size() >= kSlots) return absl::FailedPreconditionError("CUDA runner: every slot is in flight");
    const uint64_t sequence = submitted_++;
    Slot& slot = slots_[SlotOf(sequence, kSlots)];
    slot.step = step;
    slot.want_grads = want_grads;
    slot.labels = batch.labels;
    slot.plan.Build(batch);
    std::vector<size_t> param_offsets;
    SPARTA_RETURN_IF_ERROR(StageInput(batch, params, slot, &param_offsets));
    SPARTA_RETURN_IF_ERROR(ReserveOutput(batch, params, slot));
    for (const StreamOp& op : SubmitOps(sequence, kSlots)) {
      if (op.kind == StreamOpKind::kKernels) {
        SPARTA_RETURN_IF_ERROR(RunKernels(batch, params, param_offsets, slot));
      } else {
        SPARTA_RETURN_IF_ERROR(Execute(op, slot));
      }
    }
    in_flight_.push_back(sequence);
    return absl::OkStatus();
  }

  absl::StatusOr<StepOutput> Collect() override {
    if (in_flight_.empty()) return absl::FailedPreconditionError("Collect() without a submitted step");
    const uint64_t sequence = in_flight_.front();
    in_flight_.pop_front();
    Slot& slot = slots_[SlotOf(sequence, kSlots)];
    for (const StreamOp& op : CollectOps(sequence, kSlots)) SPARTA_RETURN_IF_ERROR(Execute(op, slot));
    StepOutput out{.step = slot.step};
    const auto* probs = reinterpret_cast<const float*>(slot.output.host + slot.probs_offset);
    out.probs = {probs, slot.labels.size()};
    out.loss = SummedLogLoss(out.probs, slot.labels);
    if (slot.want_grads) {
      slot.host_grads.resize(tables_.size());
      for (size_t t = 0; t < tables_.size(); ++t) {
        const char* at = slot.output.host + slot.grad_offsets[t];
        if (options_.half_precision_copies) {
          slot.host_grads[t].resize(slot.grad_floats[t]);
          HalvesToFloats(reinterpret_cast<const uint16_t*>(at), slot.host_grads[t].data(), slot.grad_floats[t]);
          out.grads.emplace_back(slot.host_grads[t]);
        } else {
          out.grads.emplace_back(reinterpret_cast<const float*>(at), slot.grad_floats[t]);
        }
      }
    }
    return out;
  }

 private:
  cudaStream_t stream(Lane lane) const { return streams_[static_cast<int>(lane) - 1]; }
  size_t value_bytes() const { return options_.half_precision_copies ? sizeof(uint16_t) : sizeof(float); }

  // The batch, its plans and its parameters, side by side in the slot's
  // pinned buffer (the kStage op: the slot is idle, its last copy-in done).
  absl::Status StageInput(const Batch& batch, const std::vector<std::span<const float>>& params, Slot& slot,
                          std::vector<size_t>* param_offsets) {
    const BatchPlan& plan = slot.plan;
    struct Piece {
      const void* data;
      size_t bytes;
      size_t offset;
    };
    StagingLayout layout;
    std::vector<Piece> pieces;
    auto add = [&](const auto& v) {
      const size_t bytes = v.size() * sizeof(v[0]);
      pieces.push_back({v.data(), bytes, layout.Add(bytes)});
    };
    add(batch.labels);
    add(batch.offsets);
    add(batch.slots);
    add(batch.values);
    add(batch.fields);
    add(batch.dense);
    add(plan.feature_rows);
    add(plan.bag_offsets);
    add(plan.bag_features);
    add(plan.bag_rows);
    add(plan.bag_fields);
    add(plan.key_offsets);
    add(plan.key_features);
    param_offsets->clear();
    for (const auto& p : params) param_offsets->push_back(layout.Add(p.size() * value_bytes()));
    SPARTA_RETURN_IF_ERROR(slot.input.Reserve(layout.size()));
    for (const Piece& piece : pieces) {
      if (piece.bytes > 0) std::memcpy(slot.input.host + piece.offset, piece.data, piece.bytes);
    }
    for (size_t t = 0; t < params.size(); ++t) {
      char* to = slot.input.host + (*param_offsets)[t];
      if (options_.half_precision_copies) {
        FloatsToHalves(params[t].data(), reinterpret_cast<uint16_t*>(to), params[t].size());
      } else if (!params[t].empty()) {
        std::memcpy(to, params[t].data(), params[t].size_bytes());
      }
    }
    // The view's pointers, into the device copy of the same layout.
    const char* d = slot.input.device;
    auto at = [&](size_t i) { return d + pieces[i].offset; };
    view_ = BatchView{
        .size = batch.size,
        .nnz = static_cast<uint32_t>(batch.slots.size()),
        .num_unique = static_cast<uint32_t>(batch.unique_keys.size()),
        .num_dense = batch.num_dense,
        .num_bags = static_cast<uint32_t>(plan.bag_rows.size()),
        .labels = reinterpret_cast<const float*>(at(0)),
        .offsets = reinterpret_cast<const uint32_t*>(at(1)),
        .slots = reinterpret_cast<const uint32_t*>(at(2)),
        .values = reinterpret_cast<const float*>(at(3)),
        .fields = reinterpret_cast<const uint32_t*>(at(4)),
        .dense = reinterpret_cast<const float*>(at(5)),
        .feature_rows = reinterpret_cast<const uint32_t*>(at(6)),
        .bag_offsets = reinterpret_cast<const uint32_t*>(at(7)),
        .bag_features = reinterpret_cast<const uint32_t*>(at(8)),
        .bag_rows = reinterpret_cast<const uint32_t*>(at(9)),
        .bag_fields = reinterpret_cast<const uint32_t*>(at(10)),
        .key_offsets = reinterpret_cast<const uint32_t*>(at(11)),
        .key_features = reinterpret_cast<const uint32_t*>(at(12)),
    };
    input_bytes_ = layout.size();
    return absl::OkStatus();
  }

  absl::Status ReserveOutput(const Batch& batch, const std::vector<std::span<const float>>& params, Slot& slot) {
    StagingLayout layout;
    slot.grad_offsets.clear();
    slot.grad_floats.clear();
    if (slot.want_grads) {
      for (const auto& p : params) {
        slot.grad_offsets.push_back(layout.Add(p.size() * value_bytes()));
        slot.grad_floats.push_back(p.size());
      }
    }
    slot.probs_offset = layout.Add(size_t{batch.size} * sizeof(float));
    output_bytes_ = layout.size();
    return slot.output.Reserve(layout.size());
  }

  // The model's passes on the compute stream: parameters widened from fp16
  // if they crossed as halves, gradients zeroed, then narrowed again.
  absl::Status RunKernels(const Batch& batch, const std::vector<std::span<const float>>& params,
                          const std::vector<size_t>& param_offsets, Slot& slot) {
    CudaBackend& b = *backend_;
    b.ResetScratch();
    const bool half = options_.half_precision_copies;
    ParamSpans device_params;
    GradSpans device_grads;
    std::vector<float*> full_grads;  // padded, for zeroing and narrowing
    for (size_t t = 0; t < params.size(); ++t) {
      const size_t n = params[t].size(), visible = VisibleSize(tables_[t], n);
      const char* in = slot.input.device + param_offsets[t];
      const float* p = reinterpret_cast<const float*>(in);
      if (half) {
        float* wide = b.Scratch(n);
        b.HalvesToFloats(reinterpret_cast<const uint16_t*>(in), n, wide);
        p = wide;
      }
      device_params.emplace_back(p, visible);
      if (!slot.want_grads) continue;
      float* g = half ? b.Scratch(n) : reinterpret_cast<float*>(slot.output.device + slot.grad_offsets[t]);
      b.Fill(g, n, 0.0f);
      full_grads.push_back(g);
      device_grads.emplace_back(g, visible);
    }
    float* probs = reinterpret_cast<float*>(slot.output.device + slot.probs_offset);
    if (!b.error().empty()) return absl::InternalError("CUDA backend: " + b.error());
    SPARTA_RETURN_IF_ERROR(GuardModelCall(slot.step, [&] {
      model_->ComputeOn(b, view_, device_params, slot.want_grads ? &device_grads : nullptr, probs);
    }));
    if (half && slot.want_grads) {
      for (size_t t = 0; t < full_grads.size(); ++t) {
        b.FloatsToHalves(full_grads[t], slot.grad_floats[t],
                         reinterpret_cast<uint16_t*>(slot.output.device + slot.grad_offsets[t]));
      }
    }
    if (!b.error().empty()) return absl::InternalError("CUDA backend: " + b.error());
    return absl::OkStatus();
  }

  absl::Status Execute(const StreamOp& op, Slot& slot) {
    switch (op.kind) {
      case StreamOpKind::kStage:  // done by StageInput before the ops run
      case StreamOpKind::kKernels:
        return absl::OkStatus();
      case StreamOpKind::kWait:
        return CudaStatus(cudaStreamWaitEvent(stream(op.lane), slot.events[static_cast<int>(op.event)], 0),
                          "cudaStreamWaitEvent");
      case StreamOpKind::kRecord:
        return CudaStatus(cudaEventRecord(slot.events[static_cast<int>(op.event)], stream(op.lane)),
                          "cudaEventRecord");
      case StreamOpKind::kSync:
        return CudaStatus(cudaEventSynchronize(slot.events[static_cast<int>(op.event)]), "a step on the GPU");
      case StreamOpKind::kCopyIn:
        return CudaStatus(cudaMemcpyAsync(slot.input.device, slot.input.host, input_bytes_, cudaMemcpyHostToDevice,
                                          stream(op.lane)),
                          "copy to the GPU");
      case StreamOpKind::kCopyOut:
        return CudaStatus(cudaMemcpyAsync(slot.output.host, slot.output.device, output_bytes_,
                                          cudaMemcpyDeviceToHost, stream(op.lane)),
                          "copy from the GPU");
    }
    return absl::OkStatus();
  }

  const Model* const model_;
  const std::vector<RunnerTable> tables_;
  const CudaRunnerOptions options_;
  std::array<cudaStream_t, 3> streams_{};  // copy-in, compute, copy-out
  std::unique_ptr<CudaBackend> backend_;
  std::array<Slot, kSlots> slots_;
  std::deque<uint64_t> in_flight_;  // submission numbers, oldest first
  uint64_t submitted_ = 0;
  BatchView view_;  // of the step being submitted
  size_t input_bytes_ = 0, output_bytes_ = 0;  // of the step being submitted
};

}  // namespace

absl::StatusOr<std::unique_ptr<StepRunner>> NewGpuStepRunner(const Model* model, std::vector<RunnerTable> tables,
                                                             const CudaRunnerOptions& options) {
  auto runner = std::make_unique<CudaStepRunner>(model, std::move(tables), options);
  if (absl::Status status = runner->Init(); !status.ok()) return status;
  return runner;
}

}  // namespace sparta
