// Parse Server 9 on PostgreSQL, configured from the environment, for deploy/compose.yaml. Files (unused by batchmem
// when payloads go to S3) are kept under /srv/parse/files. The options match the test harness's server
// (test/support/parse-server.ts), apart from who may use the master key: the services on the compose network.
import express from 'express';
import { FileSystemAdapter, ParseServer } from 'parse-server';

const required = (name) => {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`parse-server: ${name} is required\n`);
    process.exit(2);
  }
  return value;
};

const port = Number(process.env.PORT ?? 1337);
const parse = new ParseServer({
  appId: required('PARSE_APP_ID'),
  masterKey: required('PARSE_MASTER_KEY'),
  databaseURI: required('PARSE_DATABASE_URI'),
  serverURL: process.env.PARSE_SERVER_URL ?? `http://127.0.0.1:${port}/parse`,
  // The master key is accepted from the private compose network only; the port is not published to the host.
  masterKeyIps: (process.env.PARSE_MASTER_KEY_IPS ?? '0.0.0.0/0,::/0').split(','),
  filesAdapter: new FileSystemAdapter({}),
  maxUploadSize: '64mb',
  fileDownload: { enableForPublic: false, enableForAnonymousUser: false, enableForAuthenticatedUser: false },
  enforcePrivateUsers: true,
  logLevel: process.env.PARSE_LOG_LEVEL ?? 'warn',
  fileUpload: { allowedFileUrlDomains: [] },
  pages: { encodePageParamHeaders: true },
  requestComplexity: {
    includeDepth: 10, includeCount: 100, subqueryDepth: 10, queryDepth: 10, graphQLDepth: 20, graphQLFields: 200,
    batchRequestLimit: 100,
  },
  protectedFieldsOwnerExempt: false,
  protectedFieldsTriggerExempt: true,
  protectedFieldsSaveResponseExempt: false,
  installation: { duplicateDeviceTokenActionEnforceAuth: true },
  allowAggregationForReadOnlyMasterKey: false,
});
await parse.start();
const app = express();
app.use('/parse', parse.app);
const server = app.listen(port, '0.0.0.0', () => process.stdout.write(`parse-server listening on ${port}\n`));
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
