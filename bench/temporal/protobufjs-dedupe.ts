// Workaround, for the External Storage design only: with @temporalio/* 1.23 and 1.24, a default npm install gives
// @temporalio/common and @temporalio/proto two separate copies of protobufjs 8 (protobufjs 7 is hoisted for
// @grpc/proto-loader), and External Storage then fails in the SDK's own encodeReferencePayload with
// "TypeError: type must be a Type" (an instanceof check across the two copies) before any payload is stored.
// This resolve hook makes @temporalio/proto load @temporalio/common's copy (same version, 8.8.1), as a hoisted
// install would. Import it before anything from @temporalio. See docs/benchmarks.md for the evidence.
import { createRequire, registerHooks } from 'node:module';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';

const here = createRequire(import.meta.url);
const fromCommon = createRequire(here.resolve('@temporalio/common/package.json'));
// Only the top-level @temporalio/proto (1.24); the driver's own nested 1.22 copy keeps its protobufjs 7.
const protoDir = pathToFileURL(dirname(createRequire(here.resolve('@temporalio/common/package.json')).resolve('@temporalio/proto/package.json'))).href + '/';

registerHooks({
  resolve(specifier, context, nextResolve) {
    const parent = context.parentURL ?? '';
    const fromProto = parent.startsWith(protoDir) && !parent.slice(protoDir.length).includes('/node_modules/');
    if (fromProto && (specifier === 'protobufjs' || specifier.startsWith('protobufjs/'))) {
      return { url: pathToFileURL(fromCommon.resolve(specifier)).href, shortCircuit: true, format: 'commonjs' };
    }
    return nextResolve(specifier, context);
  },
});
