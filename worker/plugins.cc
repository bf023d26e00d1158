#include "worker/plugins.h"

#include <dlfcn.h>

#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "worker/models/builtin_models.h"

namespace sparta {

absl::StatusOr<const PluginInfo*> LoadPlugin(const Config& config, const std::string& key, const std::string& path) {
  static std::mutex mu;
  static absl::flat_hash_map<std::string, const PluginInfo*> loaded;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = loaded.find(path); it != loaded.end()) return it->second;
  const std::string where = absl::StrCat(config.Where(key), ": key '", key, "'");
  // RTLD_LOCAL: two plugins may define the same symbols without clashing.
  // RTLD_NODELETE: objects the plugin made stay valid even past a dlclose.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": cannot load plugin '", path, "': ", dlerror()));
  }
  using Entry = const PluginInfo* (*)();
  auto entry = reinterpret_cast<Entry>(dlsym(handle, SPARTA_PLUGIN_SYMBOL));
  if (entry == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": '", path, "' is not a Sparta plugin: it exports no '",
                                                   SPARTA_PLUGIN_SYMBOL, "' (define it with SPARTA_PLUGIN(...))"));
  }
  const PluginInfo* info = entry();
  // Only the first member is read before the version is known to match.
  if (info == nullptr || info->abi_version != SPARTA_SDK_ABI_VERSION) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, ": plugin '", path, "' was built against Sparta SDK ABI version ", info ? info->abi_version : 0,
        ", but this worker speaks version ", SPARTA_SDK_ABI_VERSION,
        "; rebuild the plugin against the installed SDK (find_package(Sparta))"));
  }
  spdlog::info("loaded plugin '{}' (SDK ABI {}) from {}", info->name, info->abi_version, path);
  loaded[path] = info;
  return info;
}

absl::StatusOr<ReaderMaker> OpenReaders(const Config& config) {
  if (config.data.plugin.empty()) {
    if (config.data.format == "libsvm") return ReaderMaker([] { return absl::StatusOr<std::unique_ptr<Reader>>(NewLibsvmReader()); });
    return ReaderMaker([] { return absl::StatusOr<std::unique_ptr<Reader>>(NewCriteoReader()); });
  }
  const PluginInfo* info;
  {
    auto loaded = LoadPlugin(config, "data.plugin", config.data.plugin);
    if (!loaded.ok()) return loaded.status();
    info = *loaded;
  }
  if (info->create_reader == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(config.Where("data.plugin"), ": key 'data.plugin': plugin '",
                                                   info->name, "' (", config.data.plugin, ") provides no reader"));
  }
  auto options = std::make_shared<const Options>(config.data.options);
  const std::string where = absl::StrCat(config.Where("data.plugin"), ": reader '", info->name, "'");
  return ReaderMaker([info, options, where]() -> absl::StatusOr<std::unique_ptr<Reader>> {
    std::string error;
    std::unique_ptr<Reader> reader;
    // Plugin code may throw; an exception must not take the worker down.
    try {
      reader.reset(info->create_reader(*options, &error));
    } catch (const std::exception& e) {
      error = absl::StrCat("the reader factory threw: ", e.what());
    }
    if (reader == nullptr) return absl::InvalidArgumentError(absl::StrCat(where, ": ", error));
    return reader;
  });
}

Options ModelOptions(const ModelConfig& model) {
  Options options(model.options);
  // The typed keys are defaults a plugin may read; model.options wins.
  auto set = [&](const char* key, std::string value) {
    if (!options.Has(key)) options.Set(key, std::move(value));
  };
  set("embedding_dim", std::to_string(model.embedding_dim));
  set("init_scale", absl::StrCat(model.init_scale));
  set("seed", std::to_string(model.seed));
  set("bottom_mlp", absl::StrJoin(model.bottom_mlp, ","));
  set("top_mlp", absl::StrJoin(model.top_mlp, ","));
  return options;
}

absl::StatusOr<std::unique_ptr<Model>> OpenModel(const Config& config, const DataSchema& schema) {
  ModelFactory factory = nullptr;
  std::string name = config.model.name, key = "model.name";
  if (!config.model.plugin.empty()) {
    key = "model.plugin";
    auto loaded = LoadPlugin(config, key, config.model.plugin);
    if (!loaded.ok()) return loaded.status();
    factory = (*loaded)->create_model;
    name = (*loaded)->name;
    if (factory == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(config.Where(key), ": key 'model.plugin': plugin '", name, "' (",
                                                     config.model.plugin, ") provides no model"));
    }
  } else {
    factory = BuiltinModel(name);
  }
  if (factory == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown model '", name, "'"));
  const Options options = ModelOptions(config.model);
  std::string error;
  std::unique_ptr<Model> model;
  try {
    model.reset(factory(ModelContext{.options = &options, .schema = schema}, &error));
  } catch (const std::exception& e) {
    error = absl::StrCat("the model factory threw: ", e.what());
  }
  if (model == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(config.Where(key), ": key '", key, "': model '", name, "': ", error));
  }
  return model;
}

}  // namespace sparta
