// TaskQueue<T>: an unbounded lock-free queue from any number of producers to
// one consumer thread, with a consumer that parks on a futex when idle.
//
// Why not a mutex and a condition variable: the server's I/O thread hands
// every request to the shard executors, and on a small machine the cost of
// a contended mutex plus a condition-variable wake-up per request was a
// measurable share of small-request latency. Here a push is one atomic
// exchange; the producer makes a system call only when the consumer is
// actually asleep.
//
// The queue is Dmitry Vyukov's intrusive MPSC list: producers swap
// themselves in at `head_`, the consumer walks from `tail_`. A push that has
// swapped `head_` but not yet linked `next` is briefly invisible; Pop()
// reports "empty" then and the consumer tries again.
//
// Thread-safe: Push() from any thread; Pop()/WaitPop() from one thread only.
#ifndef SPARTA_COMMON_TASK_QUEUE_H_
#define SPARTA_COMMON_TASK_QUEUE_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <utility>

namespace sparta {

template <class T>
class TaskQueue {
 public:
  TaskQueue() : head_(&stub_), tail_(&stub_) {}
  ~TaskQueue() {
    while (Pop()) {
    }
  }
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  void Push(T value) {
    Node* node = new Node(std::move(value));
    Node* prev = head_.exchange(node, std::memory_order_acq_rel);
    prev->next.store(node, std::memory_order_release);
    // Pairs with the fence in WaitPop(): either the consumer sees the node
    // when it re-checks, or we see it asleep here and wake it.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (state_.load(std::memory_order_relaxed) == kSleeping) {
      state_.store(kAwake, std::memory_order_relaxed);
      state_.notify_one();
    }
  }

  // Tells the consumer no more items will come: WaitPop() returns nothing
  // once the queue is empty. Any thread.
  void Close() {
    closed_.store(true, std::memory_order_seq_cst);
    state_.store(kAwake, std::memory_order_seq_cst);
    state_.notify_one();
  }

  // Consumer only. Returns the oldest item, or nothing if none is visible.
  std::optional<T> Pop() {
    Node* tail = tail_;
    Node* next = tail->next.load(std::memory_order_acquire);
    if (tail == &stub_) {  // skip the stub
      if (next == nullptr) return std::nullopt;
      tail_ = tail = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return Take(tail);
    }
    if (tail != head_.load(std::memory_order_acquire)) return std::nullopt;  // a push is mid-way
    // `tail` is the last node: put the stub behind it so it can be taken.
    stub_.next.store(nullptr, std::memory_order_relaxed);
    Node* prev = head_.exchange(&stub_, std::memory_order_acq_rel);
    prev->next.store(&stub_, std::memory_order_release);
    next = tail->next.load(std::memory_order_acquire);
    if (next == nullptr) return std::nullopt;
    tail_ = next;
    return Take(tail);
  }

  // Consumer only. Spins briefly (a producer usually follows within
  // microseconds under load), then sleeps until a Push() or Close().
  // Returns nothing only after Close(), once the queue is empty.
  std::optional<T> WaitPop() {
    for (int spin = 0; spin < kSpins; ++spin) {
      if (auto item = Pop()) return item;
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    while (true) {
      state_.store(kSleeping, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (auto item = Pop()) {
        state_.store(kAwake, std::memory_order_relaxed);
        return item;
      }
      if (!Empty()) continue;  // a push is mid-way: it will be visible soon
      if (closed_.load(std::memory_order_seq_cst)) return std::nullopt;
      state_.wait(kSleeping, std::memory_order_acquire);
    }
  }

 private:
  struct Node {
    Node() = default;
    explicit Node(T v) : value(std::move(v)) {}
    std::atomic<Node*> next{nullptr};
    std::optional<T> value;
  };
  static constexpr uint32_t kAwake = 0, kSleeping = 1;
  // About a quarter of a millisecond: long enough to catch the next request
  // of a client waiting on the previous reply (a futex wake-up through
  // std::atomic::wait costs more than that on a busy VM), short enough not to
  // steal a core from the I/O thread for long. Measured in README.md.
  static constexpr int kSpins = 5000;

  bool Empty() const {
    return tail_ == head_.load(std::memory_order_acquire) && tail_->next.load(std::memory_order_acquire) == nullptr;
  }

  static std::optional<T> Take(Node* node) {
    std::optional<T> value = std::move(node->value);
    delete node;
    return value;
  }

  alignas(64) std::atomic<Node*> head_;  // producers
  alignas(64) Node* tail_;               // consumer
  Node stub_;
  alignas(64) std::atomic<uint32_t> state_{kAwake};
  std::atomic<bool> closed_{false};
};

}  // namespace sparta

#endif  // SPARTA_COMMON_TASK_QUEUE_H_
