// Defaults of the JobSpec, matching PrefixQuant's reference command line.
//
// ApplyDefaults fills every unset field with its documented default (see job.proto) and
// leaves set fields alone; applying it twice changes nothing. The scheduler applies it on
// submit so the stored spec says exactly what runs.
#ifndef QUANTD_PROTO_SPEC_DEFAULTS_H_
#define QUANTD_PROTO_SPEC_DEFAULTS_H_

#include "quantd/v1/job.pb.h"

namespace quantd {

void ApplyDefaults(v1::JobSpec* spec);

}  // namespace quantd

#endif  // QUANTD_PROTO_SPEC_DEFAULTS_H_
