#include "proto/spec/spec_file.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace quantd {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

absl::Status KeyError(const std::string& path, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(path.empty() ? "spec" : path, ": ", problem));
}

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

absl::StatusOr<json> ScalarToJson(const YAML::Node& node, const FieldDescriptor& field,
                                  const std::string& path) {
  if (!node.IsScalar()) return KeyError(path, "expected a single value");
  const std::string text = node.Scalar();
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(text);
      if (lower == "true" || lower == "yes" || lower == "on") return json(true);
      if (lower == "false" || lower == "no" || lower == "off") return json(false);
      return KeyError(path, "expected true or false, got \"" + text + "\"");
    }
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      size_t start = (!text.empty() && (text[0] == '-' || text[0] == '+')) ? 1 : 0;
      if (text.size() == start || text.size() > 19) {
        return KeyError(path, "expected an integer, got \"" + text + "\"");
      }
      for (size_t i = start; i < text.size(); ++i) {
        if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
          return KeyError(path, "expected an integer, got \"" + text + "\"");
        }
      }
      return json(std::stoll(text));
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      try {
        size_t used = 0;
        const double value = std::stod(text, &used);
        if (used == text.size()) return json(value);
      } catch (const std::exception&) {
      }
      return KeyError(path, "expected a number, got \"" + text + "\"");
    }
    case FieldDescriptor::CPPTYPE_STRING:
      return json(text);
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* type = field.enum_type();
      if (type->FindValueByName(text) != nullptr) return json(text);
      // Short form: "static" for QUANT_MODE_STATIC. The prefix is the value-0 name less
      // its trailing "UNSPECIFIED".
      std::string prefix = type->value(0)->name();
      const std::string kUnspecified = "UNSPECIFIED";
      if (prefix.size() > kUnspecified.size()) {
        prefix.resize(prefix.size() - kUnspecified.size());
      }
      std::string full = prefix + absl::AsciiStrToUpper(text);
      for (char& c : full) {
        if (c == '-') c = '_';
      }
      if (type->FindValueByName(full) != nullptr) return json(full);
      std::string allowed;
      for (int i = 1; i < type->value_count(); ++i) {
        absl::StrAppend(&allowed, i > 1 ? ", " : "",
                        absl::AsciiStrToLower(type->value(i)->name().substr(prefix.size())));
      }
      return KeyError(path, "unknown value \"" + text + "\" (one of: " + allowed + ")");
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return KeyError(path, "unsupported field type");
}

absl::StatusOr<json> MessageToJsonValue(const YAML::Node& node, const Descriptor& descriptor,
                                        const std::string& path);

absl::StatusOr<json> ValueToJson(const YAML::Node& node, const FieldDescriptor& field,
                                 const std::string& path) {
  if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    return MessageToJsonValue(node, *field.message_type(), path);
  }
  return ScalarToJson(node, field, path);
}

absl::StatusOr<json> FieldToJson(const YAML::Node& node, const FieldDescriptor& field,
                                 const std::string& path) {
  if (field.is_map()) {
    if (!node.IsMap()) return KeyError(path, "expected a mapping");
    json object = json::object();
    const FieldDescriptor& value_field = *field.message_type()->map_value();
    for (const auto& entry : node) {
      const std::string key = entry.first.Scalar();
      auto value = ValueToJson(entry.second, value_field, path + "." + key);
      if (!value.ok()) return value.status();
      object[key] = *std::move(value);
    }
    return object;
  }
  if (field.is_repeated()) {
    json array = json::array();
    if (node.IsSequence()) {
      for (size_t i = 0; i < node.size(); ++i) {
        auto value = ValueToJson(node[i], field, absl::StrCat(path, "[", i, "]"));
        if (!value.ok()) return value.status();
        array.push_back(*std::move(value));
      }
    } else if (!node.IsNull()) {
      // A single value where a list is expected: a list of one.
      auto value = ValueToJson(node, field, path);
      if (!value.ok()) return value.status();
      array.push_back(*std::move(value));
    }
    return array;
  }
  return ValueToJson(node, field, path);
}

absl::StatusOr<json> MessageToJsonValue(const YAML::Node& node, const Descriptor& descriptor,
                                        const std::string& path) {
  json object = json::object();
  if (node.IsNull()) return object;
  if (!node.IsMap()) return KeyError(path, "expected a mapping of keys to values");
  for (const auto& entry : node) {
    const std::string key = entry.first.Scalar();
    const std::string key_path = Join(path, key);
    const FieldDescriptor* field = descriptor.FindFieldByName(key);
    if (field == nullptr) field = descriptor.FindFieldByCamelcaseName(key);
    if (field == nullptr) {
      std::string known;
      for (int i = 0; i < descriptor.field_count(); ++i) {
        absl::StrAppend(&known, i > 0 ? ", " : "", descriptor.field(i)->name());
      }
      return KeyError(key_path, "unknown key (known keys here: " + known + ")");
    }
    auto value = FieldToJson(entry.second, *field, key_path);
    if (!value.ok()) return value.status();
    object[field->name()] = *std::move(value);
  }
  return object;
}

}  // namespace

absl::Status ParseSpecText(const std::string& text, google::protobuf::Message* message) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec is not valid YAML/JSON: line ", e.mark.line + 1, " column ",
                     e.mark.column + 1, ": ", e.msg));
  }
  auto converted = MessageToJsonValue(root, *message->GetDescriptor(), "");
  if (!converted.ok()) return converted.status();
  message->Clear();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status =
      google::protobuf::util::JsonStringToMessage(converted->dump(), message, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("spec: ", status.message().as_string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::JobSpec> LoadSpecFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read spec file \"" + path + "\"");
  std::stringstream buffer;
  buffer << in.rdbuf();
  v1::JobSpec spec;
  if (auto status = ParseSpecText(buffer.str(), &spec); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", status.message()));
  }
  return spec;
}

absl::Status ApplyOverrides(const std::vector<std::string>& overrides, v1::JobSpec* spec) {
  for (const std::string& override_text : overrides) {
    const auto equals = override_text.find('=');
    if (equals == std::string::npos || equals == 0) {
      return absl::InvalidArgumentError("--set \"" + override_text +
                                        "\": expected path=value, e.g. quant.wbits=4");
    }
    const std::string path = override_text.substr(0, equals);
    const std::string value = override_text.substr(equals + 1);
    // Build the nested YAML document {a: {b: value}} and parse it into a scratch spec.
    const std::vector<std::string> keys = absl::StrSplit(path, '.');
    std::string document;
    for (size_t i = 0; i < keys.size(); ++i) {
      absl::StrAppend(&document, std::string(2 * i, ' '), keys[i], ":",
                      i + 1 < keys.size() ? "\n" : " ");
    }
    document += value.empty() ? "\"\"" : value;
    v1::JobSpec patch;
    if (auto status = ParseSpecText(document, &patch); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", override_text, ": ",
                                                     status.message()));
    }
    // Clear the target first so repeated fields are replaced, then merge.
    google::protobuf::Message* target = spec;
    for (size_t i = 0; i < keys.size(); ++i) {
      const auto* field = target->GetDescriptor()->FindFieldByName(keys[i]);
      if (field == nullptr) break;
      if (i + 1 == keys.size()) {
        target->GetReflection()->ClearField(target, field);
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !field->is_repeated()) {
        target = target->GetReflection()->MutableMessage(target, field);
      } else {
        break;
      }
    }
    spec->MergeFrom(patch);
  }
  return absl::OkStatus();
}

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = pretty;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace quantd
