metadata name = 'Inference container app'
metadata description = 'Container app that serves the model from the share: authenticated HTTPS ingress, probes sized for model load, HTTP-concurrency scaling.'

@description('Required. Container app name (2-32 lowercase letters, digits and hyphens, starting with a letter).')
@minLength(2)
@maxLength(32)
param name string

@description('Required. Resource ID of the Container Apps environment.')
param environmentId string

@description('Required. Workload profile the app runs on.')
param workloadProfileName string

@description('Required. Workload profile type; picks CPU and memory that fit the profile.')
@allowed([
  'Consumption-GPU-NC8as-T4'
  'Consumption-GPU-NC24-A100'
  'NC24-A100'
  'NC48-A100'
  'NC96-A100'
  'Consumption'
])
param gpuProfileType string

@description('Required. Environment storage entry of the share, mounted at /mount.')
param environmentStorageName string

@description('Required. Container image of the replica (Python and a CUDA build of torch; the server\'s other packages come from the share unless the image has them).')
param containerImage string

@description('Required. Container command.')
param command array

@description('Required. Share-relative directory of the base model.')
param modelPath string

@description('Required. Share-relative directory of the LoRA adapter.')
param adapterPath string

@description('Required. Weight quantization of the base model (none, 8bit, 4bit).')
@allowed([
  'none'
  '8bit'
  '4bit'
])
param quantization string

@description('Required. Primary API key.')
@secure()
param apiKeyPrimary string

@description('Required. Secondary API key (rotate one key while clients use the other).')
@secure()
param apiKeySecondary string

@description('Optional. Location of the app.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the app.')
param tags object = {}

@description('Optional. Minimum replicas; 0 scales to zero when idle.')
@minValue(0)
@maxValue(30)
param minimumInstanceCount int = 0

@description('Optional. Maximum replicas.')
@minValue(1)
@maxValue(30)
param maximumInstanceCount int = 1

@description('Optional. Concurrent HTTP requests per replica before another replica is added.')
@minValue(1)
@maxValue(1000)
param concurrentRequests int = 4

@description('Optional. Seconds before the first startup probe.')
@minValue(1)
@maxValue(60)
param startupProbeInitialDelaySeconds int = 60

@description('Optional. Seconds between startup probes.')
@minValue(1)
@maxValue(240)
param startupProbePeriodSeconds int = 120

@description('Optional. Failed startup probes before the replica is restarted.')
@minValue(1)
@maxValue(10)
param startupProbeFailureThreshold int = 10

var appPort = 7860
var mountRoot = '/mount'

// vCPU and memory of one replica per profile type (the whole GPU node for serverless and dedicated GPUs).
var replicaResources = {
  Consumption: {
    cpu: '4.0'
    memory: '8Gi'
  }
  'Consumption-GPU-NC8as-T4': {
    cpu: '8.0'
    memory: '56Gi'
  }
  'Consumption-GPU-NC24-A100': {
    cpu: '24.0'
    memory: '220Gi'
  }
  'NC24-A100': {
    cpu: '24.0'
    memory: '220Gi'
  }
  'NC48-A100': {
    cpu: '48.0'
    memory: '440Gi'
  }
  'NC96-A100': {
    cpu: '96.0'
    memory: '880Gi'
  }
}

resource app 'Microsoft.App/containerApps@2025-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    environmentId: environmentId
    workloadProfileName: workloadProfileName
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: appPort
        transport: 'auto'
        allowInsecure: false
        traffic: [
          {
            latestRevision: true
            weight: 100
          }
        ]
      }
      secrets: [
        {
          name: 'api-key-primary'
          value: apiKeyPrimary
        }
        {
          name: 'api-key-secondary'
          value: apiKeySecondary
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'inference'
          image: containerImage
          command: command
          env: [
            {
              name: 'ACA_INFER_MOUNT_ROOT'
              value: mountRoot
            }
            {
              name: 'ACA_INFER_MODEL_PATH'
              value: modelPath
            }
            {
              name: 'ACA_INFER_ADAPTER_PATH'
              value: adapterPath
            }
            {
              name: 'ACA_INFER_QUANTIZATION'
              value: quantization
            }
            {
              name: 'ACA_INFER_PORT'
              value: string(appPort)
            }
            {
              name: 'ACA_INFER_API_KEY_PRIMARY'
              secretRef: 'api-key-primary'
            }
            {
              name: 'ACA_INFER_API_KEY_SECONDARY'
              secretRef: 'api-key-secondary'
            }
            {
              name: 'HF_HUB_OFFLINE'
              value: '1'
            }
            {
              name: 'GRADIO_ANALYTICS_ENABLED'
              value: 'False'
            }
          ]
          resources: {
            cpu: json(replicaResources[gpuProfileType].cpu)
            memory: replicaResources[gpuProfileType].memory
          }
          // The startup probe gives the model time to load; liveness takes over only after it succeeds.
          // /ready and /health answer from the server's memory: no probe reads the share, so a
          // share the fine-tuning run filled with checkpoints costs the probes nothing (and the
          // bootstrap reads only app/, never lists the share).
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/ready'
                port: appPort
                scheme: 'HTTP'
              }
              initialDelaySeconds: startupProbeInitialDelaySeconds
              periodSeconds: startupProbePeriodSeconds
              failureThreshold: startupProbeFailureThreshold
              timeoutSeconds: 5
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/health'
                port: appPort
                scheme: 'HTTP'
              }
              periodSeconds: 30
              failureThreshold: 3
              timeoutSeconds: 5
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/ready'
                port: appPort
                scheme: 'HTTP'
              }
              periodSeconds: 10
              failureThreshold: 3
              timeoutSeconds: 5
            }
          ]
          volumeMounts: [
            {
              volumeName: 'model-share'
              mountPath: mountRoot
            }
          ]
        }
      ]
      scale: {
        minReplicas: minimumInstanceCount
        maxReplicas: maximumInstanceCount
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: string(concurrentRequests)
              }
            }
          }
        ]
      }
      volumes: [
        {
          name: 'model-share'
          storageType: 'AzureFile'
          storageName: environmentStorageName
        }
      ]
    }
  }
}

@description('The container app name.')
output name string = app.name

@description('The HTTPS endpoint of the app.')
output endpoint string = 'https://${app.properties.configuration.ingress.fqdn}'
