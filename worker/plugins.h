// Where a job's model and reader come from: a built-in (model.name,
// data.format) or a plugin library (model.plugin, data.plugin), behind the
// same SDK interfaces.
//
// A plugin is loaded once per process and stays loaded; LoadPlugin refuses
// a library without the entry symbol or built against another SDK ABI
// version, with a message naming the config key, where it was set, and what
// to do. Thread-safe.
#ifndef SPARTA_WORKER_PLUGINS_H_
#define SPARTA_WORKER_PLUGINS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "sparta/sdk/plugin.h"
#include "worker/data/readers.h"

namespace sparta {

// dlopen()s `path` and returns its entry point. `key` ("model.plugin") is
// the config key that named it, for messages.
absl::StatusOr<const PluginInfo*> LoadPlugin(const Config& config, const std::string& key, const std::string& path);

// Makes the job's readers: data.plugin's, or the built-in data.format.
absl::StatusOr<ReaderMaker> OpenReaders(const Config& config);

// The options a model is created with: model.options plus the typed model
// keys (embedding_dim, init_scale, seed, bottom_mlp, top_mlp).
Options ModelOptions(const ModelConfig& model);

// Creates the job's model for data of `schema`: model.plugin's, or the
// built-in model.name.
absl::StatusOr<std::unique_ptr<Model>> OpenModel(const Config& config, const DataSchema& schema);

}  // namespace sparta

#endif  // SPARTA_WORKER_PLUGINS_H_
