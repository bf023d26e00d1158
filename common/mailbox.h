// Mailbox<T>: a queue that many threads post to and one socket-owning thread
// drains. ZeroMQ sockets are not thread-safe, so every socket in Sparta is
// owned by one thread; other threads hand it work through a Mailbox, whose
// eventfd the owner polls next to its sockets (zmq_poll accepts plain fds).
//
// Thread-safe: Post() from any thread; Drain(), TakeQueued(), ClearWake()
// and fd() from the owner (one thread at a time: the KVClient's sockets are
// owned by whoever holds its io_mu_, see worker/kv_client.h).
#ifndef SPARTA_COMMON_MAILBOX_H_
#define SPARTA_COMMON_MAILBOX_H_

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <deque>
#include <mutex>
#include <stdexcept>

namespace sparta {

template <class T>
class Mailbox {
 public:
  Mailbox() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) throw std::runtime_error("eventfd failed");  // start-up only
  }
  ~Mailbox() { close(fd_); }
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  void Post(T item) {
    bool was_empty;
    {
      std::lock_guard<std::mutex> lock(mu_);
      was_empty = items_.empty();
      items_.push_back(std::move(item));
    }
    // One wake-up per batch of posts: the owner drains everything at once.
    if (was_empty) Wake();
  }

  // Moves every queued item to `out` (appending) and clears the wake-up.
  void Drain(std::deque<T>* out) {
    uint64_t n;
    [[maybe_unused]] ssize_t r = read(fd_, &n, sizeof(n));
    std::lock_guard<std::mutex> lock(mu_);
    while (!items_.empty()) {
      out->push_back(std::move(items_.front()));
      items_.pop_front();
    }
  }

  // Moves every queued item to `out` and leaves the wake-up: for an owner
  // that takes items whenever it serves, not only when its poll says so (a
  // KVClient, on every send and wait, where reading the eventfd each time
  // was two system calls per request). Its poll must then call ClearWake()
  // when fd() is readable, or the next poll would return at once, and call
  // it before the TakeQueued() that takes the items, in the same turn as
  // owner: a wake-up cleared after the items were taken may be an item's
  // posted since, left queued with nothing to wake the owner for it.
  void TakeQueued(std::deque<T>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    while (!items_.empty()) {
      out->push_back(std::move(items_.front()));
      items_.pop_front();
    }
  }

  // Clears the wake-up (after a poll found fd() readable).
  void ClearWake() {
    uint64_t n;
    [[maybe_unused]] ssize_t r = read(fd_, &n, sizeof(n));
  }

  // Wakes the owner without an item (e.g. to make it look at a stop flag).
  void Wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t r = write(fd_, &one, sizeof(one));
  }

  int fd() const { return fd_; }

 private:
  const int fd_;
  std::mutex mu_;
  std::deque<T> items_;
};

}  // namespace sparta

#endif  // SPARTA_COMMON_MAILBOX_H_
