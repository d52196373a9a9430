#!/usr/bin/python3
"""Submit a QuantizeJob to quantd and follow its events: the shape of an automated pipeline.

Uses Debian's python3-grpcio and the stubs CMake generates from proto/ into
<build>/client/python/gen (pass that folder with --stubs or put it on PYTHONPATH).

  submit_and_watch.py --addr 127.0.0.1:7070 --model ../shared/data/models/stories260K \
      --text ../shared/data/text/tinystories-valid-subset.txt --request-id nightly-42

Prints one JSON object per event, then the job's metrics. Resumes the watch after a broken
stream from the last sequence seen. Exit code: 0 succeeded, 1 failed, 2 cancelled,
69 quantd unreachable, 65 rejected spec.
"""
import argparse
import json
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default=os.environ.get("QUANTD_ADDR", "127.0.0.1:7070"))
    parser.add_argument("--token", default=os.environ.get("QUANTD_TOKEN", ""))
    parser.add_argument("--stubs", help="folder with the generated quantd/v1/*_pb2.py")
    parser.add_argument("--model", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--request-id", default="")
    args = parser.parse_args()
    if args.stubs:
        sys.path.insert(0, args.stubs)

    import grpc
    from google.protobuf import json_format
    from quantd.v1 import job_pb2, quantize_service_pb2, quantize_service_pb2_grpc

    metadata = [("authorization", "Bearer " + args.token)] if args.token else []
    channel = grpc.insecure_channel(args.addr)
    stub = quantize_service_pb2_grpc.QuantizeServiceStub(channel)

    spec = job_pb2.JobSpec()
    spec.model.path = os.path.abspath(args.model)
    spec.calibration.dataset_path = os.path.abspath(args.text)
    spec.calibration.documents = "blank-line"
    spec.eval.eval_ppl = True
    spec.eval.ppl_seqlen = 256
    spec.eval.ppl_max_windows = args.windows
    spec.labels["pipeline"] = "example"

    try:
        response = stub.SubmitJob(
            quantize_service_pb2.SubmitJobRequest(spec=spec, request_id=args.request_id),
            metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        print(f"submit failed: {error.code().name}: {error.details()}", file=sys.stderr)
        return 65 if error.code() == grpc.StatusCode.INVALID_ARGUMENT else 69
    job_id = response.job.job_id
    print(json.dumps({"submitted": job_id, "deduplicated": response.deduplicated}), flush=True)

    last_sequence, state = 0, job_pb2.JOB_STATE_UNSPECIFIED
    terminal = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}
    for attempt in range(10):
        try:
            request = quantize_service_pb2.WatchJobRequest(job_id=job_id,
                                                           after_sequence=last_sequence)
            for event in stub.WatchJob(request, metadata=metadata):
                last_sequence = event.sequence
                if event.HasField("state_change"):
                    state = event.state_change.to
                print(json.dumps(json_format.MessageToDict(
                    event, preserving_proto_field_name=True)), flush=True)
            break
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.RESOURCE_EXHAUSTED):
                print(f"watch failed: {error.code().name}: {error.details()}", file=sys.stderr)
                return 69
            time.sleep(min(5.0, 0.2 * 2 ** attempt))

    metrics = stub.GetJobMetrics(quantize_service_pb2.GetJobMetricsRequest(job_id=job_id),
                                 metadata=metadata, timeout=10)
    print(json.dumps({"job": job_id, "state": job_pb2.JobState.Name(state),
                      "metrics": dict(metrics.result.metrics)}), flush=True)
    if state not in terminal:
        return 69
    return {job_pb2.JOB_STATE_SUCCEEDED: 0, job_pb2.JOB_STATE_FAILED: 1,
            job_pb2.JOB_STATE_CANCELLED: 2}[state]


if __name__ == "__main__":
    sys.exit(main())
