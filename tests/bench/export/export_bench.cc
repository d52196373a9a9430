// export_bench: size and time of exports, as ratios against the input model measured in the same
// run. For W4A4KV4 and W8A8KV8 (static scales, rotation R1-R4, detected prefix) it runs the job
// with an output_dir and reports
//   size      artifact bytes (every file of the folder) / input safetensors bytes
//   write     the job's export write time / the time to load the input model (LlamaModel::Load)
//   validate  the job's re-open + short perplexity check time / the same baseline
//   reload    LoadArtifact (checks + unpack) / the same baseline, best of 5
//
//   build/tests/bench/export/export_bench [MODEL_DIR|--random] [TEXT]
// (defaults: the shared stories260K and TinyStories subset). --random first writes a seeded
// random Llama of a more usual proportion (hidden 512, 8 layers, intermediate 1536, vocab 32000
// with the shared Llama-2 tokenizer, fp32, untied lm_head, 58M parameters), where the blocks
// rather than the embeddings dominate the size; its perplexities mean nothing.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"
#include "worker/export/artifact_reader.h"
#include "worker/export/safetensors_writer.h"
#include "worker/pipeline/run_job.h"

namespace {

using quantd::v1::JobSpec;

class QuietSink : public quantd::EventSink {
 public:
  absl::Status Emit(const quantd::v1::JobEvent&) override { return absl::OkStatus(); }
};

template <typename F>
double BestSeconds(int rounds, F&& f) {
  double best = 1e30;
  for (int i = 0; i < rounds; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

JobSpec Spec(const std::string& model, const std::string& text, int bits, const std::string& out) {
  JobSpec spec;
  spec.mutable_model()->set_path(model);
  auto* c = spec.mutable_calibration();
  c->set_dataset_path(text);
  c->set_documents("blank-line");
  c->set_train_size(8);
  c->set_val_size(0);
  c->set_training_seqlen(256);
  auto* q = spec.mutable_quant();
  q->set_wbits(bits);
  q->set_input_bits(bits);
  q->set_input_mode(quantd::v1::QUANT_MODE_STATIC);
  q->set_k_bits(bits);
  q->set_v_bits(bits);
  q->set_kv_mode(quantd::v1::QUANT_MODE_STATIC);
  spec.mutable_rotation()->set_pre_rotate(true);
  spec.mutable_rotation()->set_down_online_had(true);
  spec.mutable_rotation()->set_qk_online_had(true);
  spec.mutable_prefix()->set_enabled(true);
  spec.mutable_eval()->set_eval_ppl(false);
  spec.set_output_dir(out);
  return spec;
}

// Writes config.json, model.safetensors and tokenizer.model of a random Llama into `dir`.
bool WriteRandomLlama(const std::string& dir) {
  const int64_t d = 512, ff = 1536, layers = 8, vocab = 32000;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << nlohmann::json{
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", d},
      {"intermediate_size", ff},
      {"num_hidden_layers", layers},
      {"num_attention_heads", 8},
      {"num_key_value_heads", 8},
      {"vocab_size", vocab},
      {"max_position_embeddings", 2048},
      {"rms_norm_eps", 1e-5},
      {"tie_word_embeddings", false},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"hidden_act", "silu"},
      {"torch_dtype", "float32"}}.dump(2);
  std::filesystem::copy_file(std::string(QUANTD_SHARED_DATA) + "/tokenizers/llama2/tokenizer.model",
                             dir + "/tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing);
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"model.embed_tokens.weight", {vocab, d}},
      {"model.norm.weight", {d}},
      {"lm_head.weight", {vocab, d}}};
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    for (const char* n : {"input_layernorm", "post_attention_layernorm"}) {
      shapes.push_back({p + n + ".weight", {d}});
    }
    for (const char* n :
         {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}) {
      shapes.push_back({p + n + ".weight", {d, d}});
    }
    shapes.push_back({p + "mlp.gate_proj.weight", {ff, d}});
    shapes.push_back({p + "mlp.up_proj.weight", {ff, d}});
    shapes.push_back({p + "mlp.down_proj.weight", {d, ff}});
  }
  std::vector<quantd::exporter::TensorDecl> decls;
  for (const auto& [name, shape] : shapes) {
    decls.push_back({name, quantd::model::StDType::kF32, shape});
  }
  auto writer = quantd::exporter::SafetensorsWriter::Create(dir + "/model.safetensors", decls);
  if (!writer.ok()) return false;
  torch::manual_seed(11);
  for (const auto& [name, shape] : shapes) {
    torch::Tensor t = shape.size() == 1 ? torch::ones(shape) : torch::randn(shape) * 0.02;
    if (!(*writer)->Write(name, t.data_ptr(), t.numel() * 4).ok()) return false;
  }
  return (*writer)->Finish().ok();
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = argc > 1 ? argv[1] : std::string(QUANTD_SHARED_DATA) + "/models/stories260K";
  const std::string text =
      argc > 2 ? argv[2] : std::string(QUANTD_SHARED_DATA) + "/text/tinystories-valid-subset.txt";
  const std::string scratch = std::string(QUANTD_BINARY_DIR) + "/export-bench";
  std::filesystem::remove_all(scratch);
  std::filesystem::create_directories(scratch);
  if (model == "--random") {
    model = scratch + "/random-llama";
    if (!WriteRandomLlama(model)) {
      std::fprintf(stderr, "writing the random model failed\n");
      return 1;
    }
  }

  const double load_fp = BestSeconds(5, [&] { (void)quantd::model::LlamaModel::Load(model); });
  std::printf("input %s; baseline LlamaModel::Load %.4f s (best of 5)\n\n", model.c_str(), load_fp);
  std::printf("| setting | artifact bytes | input bytes | size | write | validate | reload |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (int bits : {4, 8}) {
    const std::string out = scratch + "/w" + std::to_string(bits);
    QuietSink sink;
    quantd::CancellationToken cancel;
    auto outcome = quantd::pipeline::RunJob(Spec(model, text, bits, out), {}, sink, cancel);
    if (!outcome.status.ok()) {
      std::fprintf(stderr, "job failed: %s\n", outcome.status.ToString().c_str());
      return 1;
    }
    auto summary = quantd::exporter::VerifyArtifact(out);
    if (!summary.ok()) {
      std::fprintf(stderr, "verify: %s\n", summary.status().ToString().c_str());
      return 1;
    }
    const auto& timings = summary->manifest["timings"];
    const double input = summary->manifest["input_model"].value("safetensors_bytes", 0.0);
    uint64_t bytes = 0;
    for (const auto& entry : std::filesystem::directory_iterator(out)) {
      bytes += std::filesystem::file_size(entry.path());
    }
    const double reload = BestSeconds(5, [&] {
      quantd::model::LoadOptions options;
      (void)quantd::exporter::LoadArtifact(out, options);
    });
    const double write = timings.value("export_write_seconds", 0.0);
    const double validate = timings.value("export_validate_seconds", 0.0);
    std::printf(
        "| W%dA%dKV%d | %llu | %.0f | %.3fx | %.2fx (%.4f s) | %.2fx (%.4f s) | %.2fx "
        "(%.4f s) |\n",
        bits, bits, bits, static_cast<unsigned long long>(bytes), input, bytes / input,
        write / load_fp, write, validate / load_fp, validate, reload / load_fp, reload);
  }
  std::filesystem::remove_all(scratch);
  return 0;
}
