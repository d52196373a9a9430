#include "worker/export/inspect.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "proto/common/status_macros.h"
#include "worker/export/artifact_reader.h"

namespace quantd::exporter {
namespace {

std::string Bits(int bits) { return bits >= 16 ? "16 (not quantized)" : absl::StrCat(bits); }

std::string Size(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return absl::StrFormat("%.2f GiB", bytes / 1073741824.0);
  if (bytes >= (uint64_t{1} << 20)) return absl::StrFormat("%.2f MiB", bytes / 1048576.0);
  if (bytes >= 1024) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  return absl::StrCat(bytes, " B");
}

}  // namespace

absl::StatusOr<nlohmann::json> InspectArtifact(const std::string& dir) {
  ASSIGN_OR_RETURN(ArtifactSummary s, VerifyArtifact(dir));
  const QuantConfig& q = s.quant;
  nlohmann::json j;
  j["dir"] = dir;
  j["model"] = s.manifest.value("job", nlohmann::json::object()).value("model_name", "");
  j["layers"] = s.config.num_hidden_layers;
  j["hidden_size"] = s.config.hidden_size;
  j["dtype"] = q.json.at("dtype");
  j["weight"] = q.json.at("weight");
  j["activation"] = q.json.at("activation");
  j["kv_cache"] = q.json.at("kv_cache");
  j["rotation"] = q.json.at("rotation");
  j["prefix"] = q.json.value("prefix", nlohmann::json());
  j["metrics"] = s.manifest.value("metrics", nlohmann::json::object());
  j["timings"] = s.manifest.value("timings", nlohmann::json::object());
  j["files"] = nlohmann::json::array();
  for (const auto& f : s.manifest.at("files")) {
    j["files"].push_back({{"name", f.at("name")}, {"bytes", f.at("bytes")}});
  }
  j["artifact_bytes"] = s.total_bytes;
  const uint64_t input =
      s.manifest.value("input_model", nlohmann::json::object()).value("safetensors_bytes", 0);
  j["input_bytes"] = input;
  j["compression_ratio"] = s.total_bytes > 0 ? static_cast<double>(input) / s.total_bytes : 0.0;
  return j;
}

std::string FormatInspection(const nlohmann::json& j) {
  std::string out;
  auto line = [&](const std::string& key, const std::string& value) {
    absl::StrAppend(&out, absl::StrFormat("%-18s %s\n", key + ":", value));
  };
  line("export", j.value("dir", ""));
  line("model", absl::StrCat(j.value("model", ""), " (", j.value("layers", 0), " layers, hidden ",
                             j.value("hidden_size", 0), ", ", j.value("dtype", ""), ")"));
  const auto& w = j.at("weight");
  const int64_t group = w.value("group_size", int64_t{-1});
  line("weights", absl::StrCat(Bits(w.value("bits", 16)), " bits",
                               w.value("bits", 16) < 16
                                   ? absl::StrCat(", ",
                                                  group > 0 ? absl::StrCat("groups of ", group)
                                                            : std::string("per channel"),
                                                  w.value("mse_init", false) ? ", mse scales" : "")
                                   : std::string()));
  const auto& a = j.at("activation");
  line("activations", absl::StrCat(Bits(a.value("bits", 16)), " bits",
                                   a.value("bits", 16) < 16
                                       ? absl::StrCat(", ", a.value("mode", ""), " per-tensor")
                                       : std::string()));
  const auto& kv = j.at("kv_cache");
  line("kv cache",
       absl::StrCat(
           "K ", Bits(kv.value("k_bits", 16)), ", V ", Bits(kv.value("v_bits", 16)), " bits",
           kv.contains("mode") && (kv.value("k_bits", 16) < 16 || kv.value("v_bits", 16) < 16)
               ? absl::StrCat(", ", kv.value("mode", ""), ", groups of ",
                              kv.value("group_size", int64_t{0}))
               : std::string()));
  const auto& r = j.at("rotation");
  std::string rotation =
      r.value("applied", false) ? absl::StrCat(r.value("mode", ""), " R1/R2") : std::string("none");
  if (r.contains("down_proj_online_hadamard") && !r["down_proj_online_hadamard"].is_null()) {
    absl::StrAppend(&rotation, ", online R4 (", r["down_proj_online_hadamard"].value("n", 0), ")");
  }
  if (r.contains("qk_online_hadamard") && !r["qk_online_hadamard"].is_null()) {
    absl::StrAppend(&rotation, ", online R3 (", r["qk_online_hadamard"].value("n", 0), ")");
  }
  line("rotation", rotation);
  const auto& p = j.at("prefix");
  line("prefix", p.is_null()
                     ? std::string("none")
                     : absl::StrCat(p.value("length", 0),
                                    p.value("length", 0) == 1 ? " token, ids " : " tokens, ids ",
                                    absl::StrJoin(p.at("token_ids").get<std::vector<int>>(), " ")));
  for (const auto& [name, value] : j.at("metrics").items()) {
    if (name.rfind("ppl/", 0) == 0) line(name, absl::StrFormat("%.4f", value.get<double>()));
    if (name.rfind("acc/", 0) == 0) {
      line(name, absl::StrFormat("%.2f %%", 100 * value.get<double>()));
    }
  }
  for (const auto& f : j.at("files")) {
    line("  " + f.at("name").get<std::string>(), Size(f.at("bytes").get<uint64_t>()));
  }
  line("size", absl::StrCat(Size(j.value("artifact_bytes", uint64_t{0})), " (input ",
                            Size(j.value("input_bytes", uint64_t{0})), ")"));
  line("compression", absl::StrFormat("%.2fx", j.value("compression_ratio", 0.0)));
  return out;
}

}  // namespace quantd::exporter
