// Package remote runs coordinators and executors as processes of their own:
// it carries executor.Network's triggers, results, messages and reports over
// the native protocol (ops OpExTrigger to OpExReport, see docs/protocol.md),
// serves a process's coordinator or executor to the others (Handler), and
// gives both the KVS through a client (KV, WatchedKV).
//
// `trellis up` runs a coordinator and an executor in the storage node's
// process and needs none of this; `trellis coordinator` and `trellis
// executor` are built on it.
//
// # Addresses
//
// A coordinator's or executor's address is the native address its process
// serves (Handler through a wireserver.Server): coordinators learn
// executors from their reports, executors name each other in a call's
// schedule, and an executor sends a call's outcome to the coordinator that
// started it (Trigger.ReplyTo). Each message names its receiver, so a
// process answers "unavailable" for a role it does not run rather than
// handing a trigger to the wrong one.
//
// # Failures
//
// A message that cannot be delivered (the process is gone, the connection
// broke, the receiver refused it) is an error wrapping wire.ErrUnavailable;
// the coordinator re-runs the call without that executor. An executor that
// dies silently stops reporting, and the coordinator re-runs its calls
// after executor.CoordinatorConfig.ExecutorExpiry.
package remote
