// The plugin entry point.
//
// A plugin is a shared library that exports one C symbol, `sparta_plugin`,
// returning a PluginInfo that starts with the SDK ABI version it was built
// against. The worker loads it with `model.plugin: lib.so` (for its model)
// or `data.plugin: lib.so` (for its reader), reads abi_version first, and
// refuses a plugin built against another version. The version changes
// whenever a struct or class of the SDK changes layout, so a stale plugin is
// refused with a message instead of crashing.
//
// A plugin provides a model, a reader, or both:
//
//   class MyModel : public sparta::Model { ... };
//   sparta::Model* NewMyModel(const sparta::ModelContext& ctx, std::string* error) {...}
//   SPARTA_PLUGIN("my_model", NewMyModel, nullptr)
//
// Factories return a heap object the worker owns (and deletes through the
// virtual destructor), or nullptr with `error` set. The library stays
// loaded for the life of the worker.
#ifndef SPARTA_SDK_PLUGIN_H_
#define SPARTA_SDK_PLUGIN_H_

#include <cstdint>
#include <string>

#include "sparta/sdk/model.h"
#include "sparta/sdk/options.h"
#include "sparta/sdk/reader.h"

#define SPARTA_SDK_ABI_VERSION 2

namespace sparta {

using ModelFactory = Model* (*)(const ModelContext& context, std::string* error);
using ReaderFactory = Reader* (*)(const Options& options, std::string* error);

struct PluginInfo {
  uint32_t abi_version;  // must stay the first member, whatever the version
  const char* name;
  ModelFactory create_model;    // may be null
  ReaderFactory create_reader;  // may be null
};

}  // namespace sparta

#define SPARTA_PLUGIN_SYMBOL "sparta_plugin"

// Defines the exported entry point. Use once per plugin library.
#define SPARTA_PLUGIN(name, model_factory, reader_factory)                                  \
  extern "C" __attribute__((visibility("default"))) const ::sparta::PluginInfo* sparta_plugin() { \
    static const ::sparta::PluginInfo info{SPARTA_SDK_ABI_VERSION, name, model_factory, reader_factory}; \
    return &info;                                                                            \
  }

#endif  // SPARTA_SDK_PLUGIN_H_
