#include "client/quantctl/commands.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/lib/connection.h"
#include "client/plot/svg_plot.h"
#include "client/quantctl/exit_codes.h"
#include "client/quantctl/live_view.h"
#include "client/quantctl/output.h"
#include "proto/common/args.h"
#include "proto/common/version.h"
#include "proto/spec/defaults.h"
#include "proto/spec/spec_file.h"
#include "proto/spec/validate.h"
#include "quantd/v1/quantize_service.grpc.pb.h"

namespace quantd::quantctl {
namespace {

constexpr char kUsage[] = R"(quantctl: submit and follow quantd jobs

usage: quantctl COMMAND [arguments] [flags]

commands:
  submit JOB.yaml   validate locally, then queue the job; prints its id
                    [--set path=value ...] [--request-id ID] [--watch]
  get JOB_ID        one job
  list              jobs, newest first [--state STATE ...] [--owner NAME]
                    [--limit N] (default 100; says on stderr when more jobs match)
  cancel JOB_ID     stop a job [--reason TEXT]
  watch JOB_ID      follow a job's events until it ends [--after SEQ]
  logs JOB_ID       the job's log lines [--follow]
  plot JOB_ID       loss curves and perplexities as an image [--out FILE.svg|FILE.png]
  validate JOB.yaml check a job file without a server [--set path=value ...]
  version           print the client version

flags for every command:
  --addr HOST:PORT  quantd address (env QUANTD_ADDR, default 127.0.0.1:7070)
                    (defaults for addr, token, ca_cert, timeout_seconds may also come from
                    $QUANTCTL_CONFIG or ~/.config/quantd/quantctl.yaml)
  --token TOKEN     bearer token (env QUANTD_TOKEN)
  --ca-cert FILE    CA certificate for TLS (env QUANTD_CA_CERT)
  --timeout SECS    deadline of each call (default 10)
  --output FORMAT   table (default), json or yaml; for watch: plain lines or json lines

A command takes only its own flags and the flags for every command.

exit codes: 0 ok / job succeeded, 1 job failed, 2 job cancelled, 64 usage,
  65 invalid input, 66 not found, 69 server unavailable, 70 server error,
  77 unauthenticated or permission denied
)";

const std::set<std::string> kValueFlags = {"addr",   "token",      "ca-cert", "timeout", "output",
                                           "set",    "request-id", "state",   "owner",   "limit",
                                           "reason", "after",      "out"};
const std::set<std::string> kSwitches = {"watch", "help", "follow"};
const std::set<std::string> kCommonFlags = {"addr",    "token",  "ca-cert",
                                            "timeout", "output", "help"};

// What each command takes besides kCommonFlags: its flags and its positional arguments.
struct CommandShape {
  std::set<std::string> flags;
  // e.g. "JOB_ID"; empty: none.
  std::string positional;
};

const std::map<std::string, CommandShape>& Commands() {
  static const auto* commands = new std::map<std::string, CommandShape>{
      {"submit", {{"set", "request-id", "watch"}, "JOB.yaml"}},
      {"validate", {{"set"}, "JOB.yaml"}},
      {"get", {{}, "JOB_ID"}},
      {"list", {{"state", "owner", "limit"}, ""}},
      {"cancel", {{"reason"}, "JOB_ID"}},
      {"watch", {{"after"}, "JOB_ID"}},
      {"logs", {{"follow"}, "JOB_ID"}},
      {"plot", {{"out"}, "JOB_ID"}},
      {"version", {{}, ""}},
  };
  return *commands;
}

// A bad command line: says what is wrong and exits 64.
int Usage(std::ostream& err, const std::string& command, const std::string& message) {
  err << "quantctl " << command << ": " << message << " (see quantctl help)\n";
  return kExitUsage;
}

// The --state values (repeatable, comma-separated, any case); INVALID_ARGUMENT naming an
// unknown one.
absl::StatusOr<std::vector<v1::JobState>> ParseStates(const Args& args) {
  std::vector<v1::JobState> states;
  for (const std::string& names : args.GetAll("state")) {
    for (const std::string& name :
         std::vector<std::string>(absl::StrSplit(names, ',', absl::SkipEmpty()))) {
      std::string upper(name);
      std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
      v1::JobState state;
      if (!v1::JobState_Parse("JOB_STATE_" + upper, &state)) {
        return absl::InvalidArgumentError("unknown state \"" + name + "\"");
      }
      states.push_back(state);
    }
  }
  return states;
}

// The command line's shape (positional arguments, flags that apply, flag values that do not
// need the server); a usage message, or empty when it is fine.
std::string CheckCommandLine(const std::string& command, const CommandShape& shape,
                             const Args& args) {
  for (const std::set<std::string>* flags : {&kValueFlags, &kSwitches}) {
    for (const std::string& flag : *flags) {
      if (args.Has(flag) && kCommonFlags.count(flag) == 0 && shape.flags.count(flag) == 0) {
        return "--" + flag + " does not apply to " + command;
      }
    }
  }
  const std::vector<std::string>& positional = args.positional();
  if (shape.positional.empty() && !positional.empty()) {
    return "unexpected argument \"" + positional[0] + "\"";
  }
  if (!shape.positional.empty() && positional.empty()) return "expected " + shape.positional;
  if (positional.size() > 1) {
    return "expected one " + shape.positional + ", got also \"" + positional[1] + "\"";
  }
  if (args.Has("output")) {
    auto format = ParseOutputFormat(args.Get("output"));
    if (!format.ok()) return "--output: " + std::string(format.status().message());
  }
  double seconds = 0;
  if (args.Has("timeout") && (!absl::SimpleAtod(args.Get("timeout"), &seconds) || seconds <= 0)) {
    return "--timeout must be a positive number of seconds";
  }
  int limit = 0;
  if (args.Has("limit") && (!absl::SimpleAtoi(args.Get("limit"), &limit) || limit <= 0)) {
    return "--limit must be a positive integer";
  }
  int64_t after = 0;
  if (args.Has("after") && (!absl::SimpleAtoi(args.Get("after"), &after) || after < 0)) {
    return "--after must be a sequence number >= 0";
  }
  if (auto states = ParseStates(args); !states.ok()) {
    return "--state: " + std::string(states.status().message());
  }
  return "";
}

struct Session {
  client::ConnectionOptions options;
  std::unique_ptr<v1::QuantizeService::Stub> stub;
  OutputFormat format = OutputFormat::kTable;
};

int Fail(std::ostream& err, const absl::Status& status, const std::string& context) {
  err << "quantctl: " << context << (context.empty() ? "" : ": ") << status.message();
  if (status.code() == absl::StatusCode::kUnavailable) {
    err << " (is quantd running and reachable?)";
  } else if (status.code() == absl::StatusCode::kUnauthenticated) {
    err << " (check --token or QUANTD_TOKEN)";
  }
  err << "\n";
  return ExitCodeFor(status);
}

absl::StatusOr<Session> OpenSession(const Args& args) {
  Session session;
  auto configured = client::OptionsFromConfigAndEnvironment();
  if (!configured.ok()) return configured.status();
  session.options = *configured;
  if (args.Has("addr")) session.options.address = args.Get("addr");
  if (args.Has("token")) session.options.token = args.Get("token");
  if (args.Has("ca-cert")) session.options.ca_cert_path = args.Get("ca-cert");
  if (args.Has("timeout")) {
    double seconds = 0;
    if (!absl::SimpleAtod(args.Get("timeout"), &seconds) || seconds <= 0) {
      return absl::InvalidArgumentError("--timeout must be a positive number of seconds");
    }
    session.options.timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  }
  auto format = ParseOutputFormat(args.Get("output", "table"));
  if (!format.ok()) return format.status();
  session.format = *format;
  auto channel = client::MakeChannel(session.options);
  if (!channel.ok()) return channel.status();
  session.stub = v1::QuantizeService::NewStub(*channel);
  return session;
}

// Loads, overrides, defaults and validates a job file.
absl::StatusOr<v1::JobSpec> LoadValidSpec(const Args& args) {
  if (args.positional().size() != 1) {
    return absl::InvalidArgumentError("expected exactly one job file");
  }
  auto spec = LoadSpecFile(args.positional()[0]);
  if (!spec.ok()) return spec.status();
  if (auto status = ApplyOverrides(args.GetAll("set"), &*spec); !status.ok()) return status;
  ApplyDefaults(&*spec);
  if (auto status = ValidateSpec(*spec); !status.ok()) return status;
  return spec;
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

int ExitCodeForJob(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_SUCCEEDED:
      return kExitOk;
    case v1::JOB_STATE_CANCELLED:
      return kExitJobCancelled;
    default:
      return kExitJobFailed;
  }
}

// The live view when a person watches in a terminal; plain lines otherwise.
std::unique_ptr<LiveView> MaybeLiveView(const Session& session, const std::string& job_id,
                                        std::ostream& out) {
  if (session.format != OutputFormat::kTable || &out != &std::cout || !::isatty(STDOUT_FILENO)) {
    return nullptr;
  }
  winsize size{};
  const int width =
      ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 ? size.ws_col : 80;
  return std::make_unique<LiveView>(out, job_id, width);
}

// Streams the events of `job_id` after `after` to `on_event` until the stream ends with OK
// (after the terminal event) or `on_event` returns false. A dropped stream (UNAVAILABLE,
// RESOURCE_EXHAUSTED) is resumed after the last sequence delivered, so nothing is missed or
// repeated; it gives up after 9 tries in a row that delivered nothing. Says so on `err`.
absl::Status FollowEvents(Session& session, const std::string& job_id, int64_t after,
                          const std::function<bool(const v1::JobEvent&)>& on_event,
                          std::ostream& err) {
  int attempts_without_progress = 0;
  while (true) {
    grpc::ClientContext context;
    client::PrepareContext(session.options, /*with_deadline=*/false, &context);
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    request.set_after_sequence(after);
    auto reader = session.stub->WatchJob(&context, request);
    v1::JobEvent event;
    bool progressed = false;
    bool stopped = false;
    while (reader->Read(&event)) {
      progressed = true;
      after = event.sequence();
      if (!on_event(event)) {
        stopped = true;
        context.TryCancel();
        break;
      }
    }
    const absl::Status status = client::ToAbslStatus(reader->Finish());
    if (status.ok() || stopped) return absl::OkStatus();
    const bool retryable = status.code() == absl::StatusCode::kUnavailable ||
                           status.code() == absl::StatusCode::kResourceExhausted;
    attempts_without_progress = progressed ? 0 : attempts_without_progress + 1;
    if (!retryable || attempts_without_progress > 8) return status;
    const auto backoff = std::chrono::milliseconds(
        std::min<int64_t>(5000, 100LL << std::min(attempts_without_progress, 6)));
    err << "quantctl: connection lost (" << status.message() << "); resuming after #" << after
        << "\n";
    std::this_thread::sleep_for(backoff);
  }
}

int Watch(Session& session, const std::string& job_id, int64_t after, std::ostream& out,
          std::ostream& err) {
  std::unique_ptr<LiveView> live = MaybeLiveView(session, job_id, out);
  std::map<std::string, double> metrics;
  v1::JobState last_state = v1::JOB_STATE_UNSPECIFIED;
  const absl::Status status = FollowEvents(
      session, job_id, after,
      [&](const v1::JobEvent& event) {
        if (event.has_state_change()) last_state = event.state_change().to();
        if (event.has_metric()) metrics[event.metric().name()] = event.metric().value();
        if (live != nullptr) {
          live->Update(event);
          return true;
        }
        if (session.format == OutputFormat::kJson) {
          out << ToJson(event, /*pretty=*/false) << "\n";
        } else {
          out << FormatEventLine(event) << "\n";
        }
        out.flush();
        return true;
      },
      err);
  if (!status.ok()) return Fail(err, status, "watch " + job_id);
  if (live != nullptr) {
    live->Finish();
  } else if (session.format == OutputFormat::kTable && !metrics.empty()) {
    out << "\n" << LiveView::MetricsTable(metrics);
  }
  if (!IsTerminal(last_state)) {
    grpc::ClientContext context;
    client::PrepareContext(session.options, /*with_deadline=*/true, &context);
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    v1::Job job;
    const absl::Status status = client::ToAbslStatus(session.stub->GetJob(&context, request, &job));
    if (!status.ok()) return Fail(err, status, "get " + job_id);
    last_state = job.state();
  }
  return ExitCodeForJob(last_state);
}

int RunValidate(const Args& args, std::ostream& out, std::ostream& err) {
  auto spec = LoadValidSpec(args);
  if (!spec.ok()) return Fail(err, spec.status(), "");
  auto format = ParseOutputFormat(args.Get("output", "yaml"));
  if (!format.ok()) return Fail(err, format.status(), "");
  out << FormatMessage(*spec, *format == OutputFormat::kTable ? OutputFormat::kYaml : *format);
  return kExitOk;
}

int RunSubmit(const Args& args, std::ostream& out, std::ostream& err) {
  auto spec = LoadValidSpec(args);
  if (!spec.ok()) return Fail(err, spec.status(), "");
  auto session = OpenSession(args);
  if (!session.ok()) return Fail(err, session.status(), "");
  grpc::ClientContext context;
  client::PrepareContext(session->options, /*with_deadline=*/true, &context);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = *spec;
  request.set_request_id(args.Get("request-id"));
  v1::SubmitJobResponse response;
  const absl::Status status =
      client::ToAbslStatus(session->stub->SubmitJob(&context, request, &response));
  if (!status.ok()) return Fail(err, status, "submit");
  if (session->format == OutputFormat::kTable) {
    out << response.job().job_id() << (response.deduplicated() ? " (existing job)" : "") << "\n";
  } else if (session->format == OutputFormat::kJson && args.Has("watch")) {
    // One JSON document per line, the reply first, then the events: a stream to parse by line.
    out << ToJson(response, /*pretty=*/false) << "\n";
  } else {
    out << FormatMessage(response, session->format);
  }
  if (!args.Has("watch")) return kExitOk;
  return Watch(*session, response.job().job_id(), 0, out, err);
}

int RunGet(const Args& args, std::ostream& out, std::ostream& err) {
  auto session = OpenSession(args);
  if (!session.ok()) return Fail(err, session.status(), "");
  grpc::ClientContext context;
  client::PrepareContext(session->options, /*with_deadline=*/true, &context);
  v1::GetJobRequest request;
  request.set_job_id(args.positional()[0]);
  v1::Job job;
  const absl::Status status = client::ToAbslStatus(session->stub->GetJob(&context, request, &job));
  if (!status.ok()) return Fail(err, status, "get " + request.job_id());
  out << (session->format == OutputFormat::kTable ? FormatJobTable({job})
                                                  : FormatMessage(job, session->format));
  return kExitOk;
}

int RunList(const Args& args, std::ostream& out, std::ostream& err) {
  auto session = OpenSession(args);
  if (!session.ok()) return Fail(err, session.status(), "");
  v1::ListJobsRequest request;
  auto states = ParseStates(args);
  if (!states.ok()) return Fail(err, states.status(), "--state");
  for (v1::JobState state : *states) request.add_states(state);
  request.set_owner(args.Get("owner"));
  int limit = 100;
  if (args.Has("limit") && (!absl::SimpleAtoi(args.Get("limit"), &limit) || limit <= 0)) {
    return Fail(err, absl::InvalidArgumentError("must be a positive integer"), "--limit");
  }
  v1::ListJobsResponse all;
  do {
    grpc::ClientContext context;
    client::PrepareContext(session->options, /*with_deadline=*/true, &context);
    request.set_page_size(std::min(limit - all.jobs_size(), 1000));
    v1::ListJobsResponse page;
    const absl::Status status =
        client::ToAbslStatus(session->stub->ListJobs(&context, request, &page));
    if (!status.ok()) return Fail(err, status, "list");
    for (auto& job : *page.mutable_jobs()) *all.add_jobs() = std::move(job);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && all.jobs_size() < limit);
  if (session->format == OutputFormat::kTable) {
    out << FormatJobTable({all.jobs().begin(), all.jobs().end()});
  } else {
    out << FormatMessage(all, session->format);
  }
  if (!request.page_token().empty()) {
    err << "quantctl list: showing the first " << limit
        << " jobs; more match (raise --limit, or narrow with --state/--owner)\n";
  }
  return kExitOk;
}

int RunCancel(const Args& args, std::ostream& out, std::ostream& err) {
  auto session = OpenSession(args);
  if (!session.ok()) return Fail(err, session.status(), "");
  grpc::ClientContext context;
  client::PrepareContext(session->options, /*with_deadline=*/true, &context);
  v1::CancelJobRequest request;
  request.set_job_id(args.positional()[0]);
  request.set_reason(args.Get("reason", "cancelled with quantctl"));
  v1::Job job;
  const absl::Status status =
      client::ToAbslStatus(session->stub->CancelJob(&context, request, &job));
  if (!status.ok()) return Fail(err, status, "cancel " + request.job_id());
  if (session->format == OutputFormat::kTable) {
    out << job.job_id() << " " << ShortName(job.state()) << "\n";
  } else {
    out << FormatMessage(job, session->format);
  }
  return kExitOk;
}

int RunWatch(const Args& args, std::ostream& out, std::ostream& err) {
  int64_t after = 0;
  if (args.Has("after") && (!absl::SimpleAtoi(args.Get("after"), &after) || after < 0)) {
    return Fail(err, absl::InvalidArgumentError("must be a sequence number >= 0"), "--after");
  }
  auto session = OpenSession(args);
  if (!session.ok()) return Fail(err, session.status(), "");
  return Watch(*session, args.positional()[0], after, out, err);
}

int RunLogs(const Args& args, std::ostream& out, std::ostream& err) {
  auto session = OpenSession(args);
  if (!session.ok()) return Fail(err, session.status(), "");
  const std::string job_id = args.positional()[0];
  int64_t until = INT64_MAX;
  if (!args.Has("follow")) {
    grpc::ClientContext context;
    client::PrepareContext(session->options, /*with_deadline=*/true, &context);
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    v1::Job job;
    const absl::Status status =
        client::ToAbslStatus(session->stub->GetJob(&context, request, &job));
    if (!status.ok()) return Fail(err, status, "logs " + job_id);
    until = job.last_sequence();
    if (until == 0) return kExitOk;
  }
  const absl::Status status = FollowEvents(
      *session, job_id, 0,
      [&](const v1::JobEvent& event) {
        const bool failure = event.has_state_change() && event.state_change().has_failure();
        if (event.has_log() || failure) {
          if (session->format == OutputFormat::kJson) {
            out << ToJson(event, /*pretty=*/false) << "\n";
          } else if (event.has_log()) {
            out << format::Printable(event.log().level() + " " + event.log().message()) << "\n";
          } else {
            out << "error " << ShortName(event.state_change().failure().reason()) << ": "
                << format::Printable(event.state_change().failure().message()) << "\n";
          }
          out.flush();
        }
        return event.sequence() < until;
      },
      err);
  if (!status.ok()) return Fail(err, status, "logs " + job_id);
  return kExitOk;
}

int RunPlot(const Args& args, std::ostream& out, std::ostream& err) {
  const std::string job_id = args.positional()[0];
  const std::string path = args.Get("out", job_id + ".svg");
  const bool png = path.size() > 4 && path.substr(path.size() - 4) == ".png";
  if (!png && !(path.size() > 4 && path.substr(path.size() - 4) == ".svg")) {
    return Fail(err, absl::InvalidArgumentError("--out must end in .svg or .png"), "plot");
  }
  auto session = OpenSession(args);
  if (!session.ok()) return Fail(err, session.status(), "");
  grpc::ClientContext context;
  client::PrepareContext(session->options, /*with_deadline=*/true, &context);
  v1::GetJobMetricsRequest request;
  request.set_job_id(job_id);
  v1::JobMetrics metrics;
  const absl::Status status =
      client::ToAbslStatus(session->stub->GetJobMetrics(&context, request, &metrics));
  if (!status.ok()) return Fail(err, status, "plot " + job_id);
  const std::string svg = plot::RenderJobSvg(metrics, "quantd job " + job_id);
  const std::string svg_path = png ? path + ".svg" : path;
  {
    std::ofstream file(svg_path);
    file << svg;
    if (!file) return Fail(err, absl::NotFoundError("cannot write " + svg_path), "plot");
  }
  if (png) {
    const std::string command = "rsvg-convert -o '" + path + "' '" + svg_path + "' 2>&1";
    const int code = std::system(command.c_str());
    std::remove(svg_path.c_str());
    if (code != 0) {
      return Fail(err,
                  absl::FailedPreconditionError("PNG needs rsvg-convert (Debian package "
                                                "librsvg2-bin); or write .svg"),
                  "plot");
    }
  }
  out << path << "\n";
  return kExitOk;
}

}  // namespace

int RunQuantctl(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  if (argv.empty() || argv[0] == "help" || argv[0] == "--help" || argv[0] == "-h") {
    (argv.empty() ? err : out) << kUsage;
    return argv.empty() ? kExitUsage : kExitOk;
  }
  const std::string command = argv[0];
  auto args = Args::Parse({argv.begin() + 1, argv.end()}, kValueFlags, kSwitches);
  if (!args.ok()) return Usage(err, command, std::string(args.status().message()));
  if (args->Has("help")) {
    out << kUsage;
    return kExitOk;
  }
  auto shape = Commands().find(command);
  if (shape == Commands().end()) {
    err << "quantctl: unknown command \"" << command << "\"\n\n" << kUsage;
    return kExitUsage;
  }
  if (const std::string usage = CheckCommandLine(command, shape->second, *args); !usage.empty()) {
    return Usage(err, command, usage);
  }
  if (command == "version") {
    out << "quantctl " << VersionString() << "\n";
    return kExitOk;
  }
  if (command == "validate") return RunValidate(*args, out, err);
  if (command == "submit") return RunSubmit(*args, out, err);
  if (command == "get") return RunGet(*args, out, err);
  if (command == "list") return RunList(*args, out, err);
  if (command == "cancel") return RunCancel(*args, out, err);
  if (command == "watch") return RunWatch(*args, out, err);
  if (command == "logs") return RunLogs(*args, out, err);
  if (command == "plot") return RunPlot(*args, out, err);
  err << "quantctl: unknown command \"" << command << "\"\n\n" << kUsage;
  return kExitUsage;
}

}  // namespace quantd::quantctl
