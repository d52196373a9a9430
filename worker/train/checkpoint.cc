#include "worker/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/common/error_text.h"
#include "proto/common/fd_write.h"

namespace quantd::train {
namespace {

constexpr char kPrefixFile[] = "prefix.pt";
constexpr char kFinetuneFile[] = "finetune.pt";

void Mix(uint64_t* h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    *h ^= p[i];
    *h *= 1099511628211ULL;
  }
}

void MixTensor(uint64_t* h, const torch::Tensor& t) {
  if (!t.defined()) return;
  const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  Mix(h, c.data_ptr(), c.numel() * c.element_size());
}

template <typename T>
torch::Tensor ToTensor(const std::vector<T>& v, torch::ScalarType type) {
  std::vector<double> d(v.begin(), v.end());
  return torch::tensor(d, torch::kFloat64).to(type);
}

template <typename T>
std::vector<T> FromTensor(const torch::Tensor& t) {
  const torch::Tensor d = t.to(torch::kFloat64).contiguous();
  std::vector<T> out;
  for (int64_t i = 0; i < d.numel(); ++i) out.push_back(static_cast<T>(d.data_ptr<double>()[i]));
  return out;
}

absl::Status WriteError(const std::string& what, const std::string& path, int error) {
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(error));
  if (error == ENOSPC || error == EDQUOT) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

// Writes the archive to <dir>/<name>.tmp with checked writes, then renames it. torch's own file
// writer throws from its destructor when a write fails (ENOSPC), which aborts the process; here
// the sink records the first error and keeps accepting, and the .tmp is removed on any failure.
absl::Status SaveAtomically(const std::string& dir, const char* name,
                            torch::serialize::OutputArchive& archive) {
  const std::string path = dir + "/" + name;
  const std::string tmp = path + ".tmp";
  std::error_code fs_error;
  std::filesystem::create_directories(dir, fs_error);
  if (fs_error) return WriteError("cannot create checkpoint directory", dir, fs_error.value());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return WriteError("cannot write checkpoint", tmp, errno);
  int write_errno = 0;
  std::string encode_error;
  try {
    archive.save_to([&](const void* data, size_t n) -> size_t {
      if (data != nullptr && write_errno == 0) write_errno = WriteAll(fd, data, n);
      return n;  // always: torch throws (from a destructor) on a short count
    });
  } catch (const std::exception& e) {
    encode_error = WithoutBacktrace(e.what());
  }
  if (write_errno == 0 && encode_error.empty() && ::fsync(fd) != 0) write_errno = errno;
  if (::close(fd) != 0 && write_errno == 0) write_errno = errno;
  absl::Status status;
  if (write_errno != 0) {
    status = WriteError("cannot write checkpoint", tmp, write_errno);
  } else if (!encode_error.empty()) {
    status = absl::InternalError(absl::StrCat("saving checkpoint ", path, ": ", encode_error));
  } else {
    std::filesystem::rename(tmp, path, fs_error);
    if (!fs_error) return absl::OkStatus();
    status = WriteError(absl::StrCat("cannot rename ", tmp, " to"), path, fs_error.value());
  }
  std::filesystem::remove(tmp, fs_error);
  return status;
}

// A checkpoint that cannot be read is a lost cache, not a reason to fail the job: it is moved
// aside to <path>.unreadable (kept for a look) with a log line, and training starts afresh.
std::nullopt_t SetAsideUnreadable(const std::string& path, const std::string& reason,
                                  const std::function<void(const std::string&)>& on_log) {
  std::error_code error;
  std::filesystem::rename(path, path + ".unreadable", error);
  if (on_log) {
    on_log(absl::StrCat("warning: ignoring unreadable checkpoint ", path, " (",
                        WithoutBacktrace(reason), ")",
                        error ? "" : absl::StrCat("; moved to ", path, ".unreadable"),
                        "; starting this phase from scratch"));
  }
  return std::nullopt;
}

// Opens <dir>/<name>; nullopt when absent, of another fingerprint, or unreadable.
absl::StatusOr<std::optional<std::unique_ptr<torch::serialize::InputArchive>>> Open(
    const std::string& dir, const char* name, const std::string& fingerprint,
    const std::function<void(const std::string&)>& on_log) {
  const std::string path = dir + "/" + name;
  if (dir.empty() || !std::filesystem::exists(path)) return std::nullopt;
  try {
    auto archive = std::make_unique<torch::serialize::InputArchive>();
    archive->load_from(path);
    c10::IValue stored;
    archive->read("fingerprint", stored);
    if (stored.toStringRef() != fingerprint) {
      if (on_log) {
        on_log(absl::StrCat("ignoring checkpoint ", path, ": fingerprint ", stored.toStringRef(),
                            " is not this job's ", fingerprint));
      }
      return std::nullopt;
    }
    return std::optional<std::unique_ptr<torch::serialize::InputArchive>>(std::move(archive));
  } catch (const std::exception& e) {
    return SetAsideUnreadable(path, e.what(), on_log);
  }
}

}  // namespace

std::string Fingerprint(const std::string& spec_text, const model::LlamaModel& model) {
  uint64_t h = 1469598103934665603ULL;
  Mix(&h, spec_text.data(), spec_text.size());
  const auto& c = model.config();
  for (int64_t v : {static_cast<int64_t>(c.vocab_size), static_cast<int64_t>(c.hidden_size),
                    static_cast<int64_t>(c.num_hidden_layers), static_cast<int64_t>(c.head_dim)}) {
    Mix(&h, &v, sizeof(v));
  }
  MixTensor(&h, model.embed_tokens);
  MixTensor(&h, model.final_norm);
  for (const auto& b : model.blocks) {
    MixTensor(&h, b.input_norm);
    MixTensor(&h, b.post_attention_norm);
    for (const auto* l :
         {&b.q_proj, &b.k_proj, &b.v_proj, &b.o_proj, &b.gate_proj, &b.up_proj, &b.down_proj}) {
      if (auto* d = dynamic_cast<model::DenseLinear*>(l->get())) MixTensor(&h, d->weight);
    }
  }
  return absl::StrFormat("%016x", h);
}

absl::Status SavePrefixCheckpoint(const std::string& dir, const std::string& fingerprint,
                                  const PrefixTrainResult& r) {
  torch::serialize::OutputArchive archive;
  try {
    archive.write("fingerprint", c10::IValue(fingerprint));
    archive.write("embeddings", r.embeddings.detach().to(torch::kCPU));
    archive.write("init_ids", ToTensor(r.init_ids, torch::kInt64));
    archive.write("nearest_ids", ToTensor(r.nearest_ids, torch::kInt64));
    archive.write("nearest_cosine", ToTensor(r.nearest_cosine, torch::kFloat64));
    c10::List<std::string> text;
    for (const auto& t : r.nearest_text) text.push_back(t);
    archive.write("nearest_text", c10::IValue(text));
    archive.write("stats", ToTensor(std::vector<double>{r.initial_loss, r.best_loss,
                                                        static_cast<double>(r.best_epoch),
                                                        static_cast<double>(r.steps)},
                                    torch::kFloat64));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("encoding the prefix checkpoint: ", e.what()));
  }
  return SaveAtomically(dir, kPrefixFile, archive);
}

absl::StatusOr<std::optional<PrefixTrainResult>> LoadPrefixCheckpoint(
    const std::string& dir, const std::string& fingerprint,
    const std::function<void(const std::string&)>& on_log) {
  auto opened = Open(dir, kPrefixFile, fingerprint, on_log);
  if (!opened.ok()) return opened.status();
  if (!opened->has_value()) return std::nullopt;
  auto& archive = **opened;
  try {
    PrefixTrainResult r;
    torch::Tensor t;
    archive->read("embeddings", r.embeddings);
    archive->read("init_ids", t);
    r.init_ids = FromTensor<int32_t>(t);
    torch::Tensor ids;
    archive->read("nearest_ids", ids);
    r.nearest_ids = FromTensor<int32_t>(ids);
    torch::Tensor cos;
    archive->read("nearest_cosine", cos);
    r.nearest_cosine = FromTensor<double>(cos);
    c10::IValue text;
    archive->read("nearest_text", text);
    for (const auto& s : text.toListRef()) r.nearest_text.push_back(s.toStringRef());
    torch::Tensor stats;
    archive->read("stats", stats);
    const auto s = FromTensor<double>(stats);
    r.initial_loss = s.at(0);
    r.best_loss = s.at(1);
    r.best_epoch = static_cast<int>(s.at(2));
    r.steps = static_cast<int64_t>(s.at(3));
    return std::optional<PrefixTrainResult>(std::move(r));
  } catch (const std::exception& e) {
    return SetAsideUnreadable(dir + "/" + kPrefixFile, e.what(), on_log);
  }
}

absl::Status SaveFinetuneCheckpoint(const std::string& dir, const FinetuneCheckpoint& c) {
  torch::serialize::OutputArchive archive;
  try {
    archive.write("fingerprint", c10::IValue(c.fingerprint));
    archive.write("next_block", c10::IValue(static_cast<int64_t>(c.next_block)));
    for (size_t i = 0; i < c.block_states.size(); ++i) {
      c10::Dict<std::string, at::Tensor> state;
      for (const auto& [name, t] : c.block_states[i])
        state.insert(name, t.detach().to(torch::kCPU));
      archive.write(absl::StrCat("block_", i), c10::IValue(state));
      archive.write(absl::StrCat("stats_", i), ToTensor(c.block_stats.at(i), torch::kFloat64));
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("encoding the fine-tuning checkpoint: ", e.what()));
  }
  return SaveAtomically(dir, kFinetuneFile, archive);
}

absl::StatusOr<std::optional<FinetuneCheckpoint>> LoadFinetuneCheckpoint(
    const std::string& dir, const std::string& fingerprint,
    const std::function<void(const std::string&)>& on_log) {
  auto opened = Open(dir, kFinetuneFile, fingerprint, on_log);
  if (!opened.ok()) return opened.status();
  if (!opened->has_value()) return std::nullopt;
  auto& archive = **opened;
  try {
    FinetuneCheckpoint c;
    c.fingerprint = fingerprint;
    c10::IValue next;
    archive->read("next_block", next);
    c.next_block = static_cast<int>(next.toInt());
    for (int i = 0; i < c.next_block; ++i) {
      c10::IValue state;
      archive->read(absl::StrCat("block_", i), state);
      std::map<std::string, torch::Tensor> tensors;
      for (const auto& entry : state.toGenericDict()) {
        tensors[entry.key().toStringRef()] = entry.value().toTensor();
      }
      c.block_states.push_back(std::move(tensors));
      torch::Tensor stats;
      archive->read(absl::StrCat("stats_", i), stats);
      c.block_stats.push_back(FromTensor<double>(stats));
    }
    return std::optional<FinetuneCheckpoint>(std::move(c));
  } catch (const std::exception& e) {
    return SetAsideUnreadable(dir + "/" + kFinetuneFile, e.what(), on_log);
  }
}

}  // namespace quantd::train
