// UninitializedVector<T>: a std::vector whose resize() leaves new elements
// of a trivial type uninitialized, for a buffer every element of which is
// written before it is read (a pull's reply: each executor writes the rows
// of its keys). Zero-filling it first cost a server's I/O thread a memset
// of every reply, 1.6 ms of a 16 MB pull (perf: 7% of the server's CPU in a
// dense pull benchmark), on the one thread every request crosses.
//
// Stateless allocator; thread-compatible, as std::vector is.
#ifndef SPARTA_COMMON_UNINITIALIZED_VECTOR_H_
#define SPARTA_COMMON_UNINITIALIZED_VECTOR_H_

#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace sparta {

template <class T>
class DefaultInitAllocator : public std::allocator<T> {
 public:
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <class U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}

  // Value-initialization (what resize() asks for) becomes default-
  // initialization: nothing for a trivial type.
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    std::allocator_traits<std::allocator<T>>::construct(static_cast<std::allocator<T>&>(*this), p,
                                                        std::forward<Args>(args)...);
  }
};

template <class T>
using UninitializedVector = std::vector<T, DefaultInitAllocator<T>>;

}  // namespace sparta

#endif  // SPARTA_COMMON_UNINITIALIZED_VECTOR_H_
