'use strict';
// Test-only Serverless Framework v3 plugin: send every AWS call to the endpoint in AWS_ENDPOINT_URL.
//
// Serverless v3 makes its AWS calls through the AWS SDK for JavaScript v2, which (unlike SDK v3)
// ignores AWS_ENDPOINT_URL. Each call builds its SDK client from `provider.getCredentials()`, so this
// plugin adds `endpoint` (one local server such as moto_server answers every service) and path-style
// S3 addressing to what that method returns. The tests copy the service into a temporary directory
// and list this file under `plugins:` there; the committed serverless.yml never mentions it.
class LocalEndpointPlugin {
  constructor(serverless) {
    const endpoint = process.env.AWS_ENDPOINT_URL;
    if (!endpoint) {
      throw new Error('local-endpoint-plugin: AWS_ENDPOINT_URL is not set; refusing to talk to real AWS');
    }
    const provider = serverless.getProvider('aws');
    const getCredentials = provider.getCredentials.bind(provider);
    provider.getCredentials = () => ({ ...getCredentials(), endpoint, s3ForcePathStyle: true });
  }
}

module.exports = LocalEndpointPlugin;
