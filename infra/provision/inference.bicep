metadata name = 'aca-infer inference'
metadata description = 'Serves a base model plus a LoRA adapter from an Azure Files share on Azure Container Apps (serverless or dedicated GPU, or CPU), behind an API key.'

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// AI Toolkit parameters (same names and meaning as its inference template; null = default here)
// ---------------------------------------------------------------------------------------------

@description('Optional. Azure region of the created resources. GPU workload profiles exist only in some regions.')
param location string = resourceGroup().location

@description('Optional. Shell commands the container runs at start, joined with "; ". Leave null or empty to run the bootstrap on the share (/mount/app/bootstrap.py), which starts the server without installing packages.')
param defaultCommands array = []

@description('Optional. Maximum replicas the app scales out to.')
@minValue(1)
@maxValue(30)
param maximumInstanceCount int = 1

@description('Optional. Storage account holding the share (3-24 lowercase letters and digits). Defaults to a name unique to the resource group.')
@minLength(3)
@maxLength(24)
param storageAccountName string = take('stinfer${uniqueString(resourceGroup().id)}', 24)

@description('Optional. Azure Files share with the model, the adapters and the app releases.')
@minLength(3)
@maxLength(63)
param fileShareName string = 'aca-infer'

@description('Optional. Container Apps environment name.')
@minLength(2)
@maxLength(60)
param acaEnvironmentName string = 'cae-infer-${uniqueString(resourceGroup().id)}'

@description('Optional. Name of the environment storage entry that points at the share.')
@minLength(2)
@maxLength(32)
param acaEnvironmentStorageName string = 'model-share'

@description('Optional. Container app name (2-32 lowercase letters, digits and hyphens).')
@minLength(2)
@maxLength(32)
param acaAppName string = 'ca-infer-${take(uniqueString(resourceGroup().id), 8)}'

@description('Optional. Log Analytics workspace name.')
@minLength(4)
@maxLength(63)
param acaLogAnalyticsName string = 'log-infer-${uniqueString(resourceGroup().id)}'

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

@description('Optional. Workload profile type: serverless GPU (Consumption-GPU-NC8as-T4, Consumption-GPU-NC24-A100; scale to zero), dedicated GPU (NC24-A100, NC48-A100, NC96-A100; billed per node) or CPU-only Consumption for small models.')
@allowed([
  'Consumption-GPU-NC8as-T4'
  'Consumption-GPU-NC24-A100'
  'NC24-A100'
  'NC48-A100'
  'NC96-A100'
  'Consumption'
])
param gpuProfileType string = 'Consumption-GPU-NC8as-T4'

@description('Optional. Name of the GPU workload profile in the environment. With useExistingEnvironment, the name of the GPU profile that environment already has.')
@minLength(1)
@maxLength(15)
param workloadProfileName string = 'gpu'

@description('Optional. Minimum replicas; 0 scales to zero when idle (the first request then waits for a cold start).')
@minValue(0)
@maxValue(30)
param minimumInstanceCount int = 0

@description('Optional. Concurrent HTTP requests per replica before another replica is added.')
@minValue(1)
@maxValue(1000)
param concurrentRequests int = 4

@description('Optional. Container image of the replica. The default is the public PyTorch CUDA runtime image (Docker Hub, pulled without credentials, pinned by digest; Python 3.11, torch 2.7.1 with CUDA 12.8): deploy puts the server\'s other packages on the share as wheels and the bootstrap installs them once per requirements hash. An image built from infra/image/Dockerfile already holds them, so nothing is installed at start.')
@minLength(1)
param containerImage string = 'docker.io/pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime@sha256:c16f4c749e2d9e96878875cdf6cc45cddda1d1a36fddd371dd6f2360f1b6e2a2'

@description('Optional. Weight quantization of the base model: none, or 8bit / 4bit through bitsandbytes (as the AI Toolkit loads base models) so a 7-8B model fits the 16 GB T4. GPU profiles only.')
@allowed([
  'none'
  '8bit'
  '4bit'
])
param quantization string = 'none'

@description('Optional. Share-relative directory of the base model (AI Toolkit layout).')
@minLength(1)
param modelPath string = 'model-cache/microsoft/Phi-3-mini-4k-instruct'

@description('Optional. Share-relative directory of the LoRA adapter (AI Toolkit layout).')
@minLength(1)
param adapterPath string = 'models/qlora/qlora/gpu_model/adapter'

@description('Required. Primary API key clients send as "Authorization: Bearer <key>" or "api-key: <key>".')
@secure()
@minLength(16)
param apiKeyPrimary string

@description('Required. Secondary API key, so one key can be rotated while clients use the other.')
@secure()
@minLength(16)
param apiKeySecondary string

@description('Optional. Seconds before the first startup probe on /ready.')
@minValue(1)
@maxValue(60)
param startupProbeInitialDelaySeconds int = 60

@description('Optional. Seconds between startup probes. A replica has initial delay + period x threshold (default 60 + 120 x 10 = 1,260 s, what a large model loading from the SMB share can need) to answer /ready before it is restarted; a shorter period notices a quick load sooner.')
@minValue(1)
@maxValue(240)
param startupProbePeriodSeconds int = 120

@description('Optional. Failed startup probes before the replica is restarted.')
@minValue(1)
@maxValue(10)
param startupProbeFailureThreshold int = 10

// ---------------------------------------------------------------------------------------------
// Storage, logs, tags, reuse
// ---------------------------------------------------------------------------------------------

@description('Optional. Quota of a newly created share in GiB.')
@minValue(1)
@maxValue(102400)
param fileShareQuotaGiB int = 256

@description('Optional. Mount mode of the share in the container. ReadOnly keeps replicas from changing the model; deploy writes through the storage API.')
@allowed([
  'ReadOnly'
  'ReadWrite'
])
param fileShareAccessMode string = 'ReadOnly'

@description('Optional. Days the Log Analytics workspace keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Optional. Tags applied to every created resource.')
param tags object = {}

@description('Optional. Use the existing storage account storageAccountName and its share fileShareName (for example the fine-tuning run\'s) instead of creating them. They are referenced, never modified.')
param useExistingStorageAccount bool = false

@description('Optional. Use the existing Log Analytics workspace acaLogAnalyticsName instead of creating one.')
param useExistingLogAnalytics bool = false

@description('Optional. Use the existing Container Apps environment acaEnvironmentName and its storage entry acaEnvironmentStorageName instead of creating them. The environment must already have the workload profile workloadProfileName.')
param useExistingEnvironment bool = false

var bootstrapCommand = [
  'python'
  '/mount/app/bootstrap.py'
]
var shellCommand = [
  '/bin/bash'
  '-c'
  join(defaultCommands, '; ')
]
var containerCommand = empty(defaultCommands) ? bootstrapCommand : shellCommand
var isCpuOnly = gpuProfileType == 'Consumption'
var appWorkloadProfileName = isCpuOnly ? 'Consumption' : workloadProfileName

module storage 'modules/storage.bicep' = if (!useExistingStorageAccount) {
  name: take('${deployment().name}-storage', 64)
  params: {
    accountName: storageAccountName
    shareName: fileShareName
    location: location
    tags: tags
    shareQuotaGiB: fileShareQuotaGiB
  }
}

// An existing environment already sends its logs somewhere: no workspace is created for it.
module monitoring 'modules/monitoring.bicep' = if (!useExistingLogAnalytics && !useExistingEnvironment) {
  name: take('${deployment().name}-monitoring', 64)
  params: {
    name: acaLogAnalyticsName
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module appEnvironment 'modules/environment.bicep' = if (!useExistingEnvironment) {
  name: take('${deployment().name}-environment', 64)
  params: {
    name: acaEnvironmentName
    storageName: acaEnvironmentStorageName
    storageAccountName: storageAccountName
    shareName: fileShareName
    logAnalyticsName: acaLogAnalyticsName
    location: location
    tags: tags
    gpuProfileType: gpuProfileType
    workloadProfileName: workloadProfileName
    dedicatedMinimumCount: minimumInstanceCount
    dedicatedMaximumCount: maximumInstanceCount
    storageAccessMode: fileShareAccessMode
  }
  dependsOn: [
    storage
    monitoring
  ]
}

// The environment the app runs in: the one created above or the existing one, never redefined here.
resource managedEnvironment 'Microsoft.App/managedEnvironments@2025-07-01' existing = {
  name: acaEnvironmentName
}

module app 'modules/app.bicep' = {
  name: take('${deployment().name}-app', 64)
  params: {
    name: acaAppName
    environmentId: managedEnvironment.id
    workloadProfileName: appWorkloadProfileName
    gpuProfileType: gpuProfileType
    environmentStorageName: acaEnvironmentStorageName
    containerImage: containerImage
    command: containerCommand
    modelPath: modelPath
    adapterPath: adapterPath
    quantization: quantization
    apiKeyPrimary: apiKeyPrimary
    apiKeySecondary: apiKeySecondary
    location: location
    tags: tags
    minimumInstanceCount: minimumInstanceCount
    maximumInstanceCount: maximumInstanceCount
    concurrentRequests: concurrentRequests
    startupProbeInitialDelaySeconds: startupProbeInitialDelaySeconds
    startupProbePeriodSeconds: startupProbePeriodSeconds
    startupProbeFailureThreshold: startupProbeFailureThreshold
  }
  dependsOn: [
    appEnvironment
  ]
}

// Outputs are the keys of infra/inference.config.json; nothing secret.

@description('Subscription of the deployment.')
output SUBSCRIPTION_ID string = subscription().subscriptionId

@description('Resource group of the deployment.')
output RESOURCE_GROUP_NAME string = resourceGroup().name

@description('Storage account that holds the share.')
output STORAGE_ACCOUNT_NAME string = storageAccountName

@description('Azure Files share mounted at /mount.')
output FILE_SHARE_NAME string = fileShareName

@description('Container app name.')
output ACA_APP_NAME string = app.outputs.name

@description('HTTPS endpoint of the app.')
output ACA_APP_ENDPOINT string = app.outputs.endpoint

@description('Region of the created resources.')
output LOCATION string = location

@description('Container Apps environment name.')
output ACA_ENVIRONMENT_NAME string = acaEnvironmentName

@description('Environment storage entry of the share.')
output ACA_ENVIRONMENT_STORAGE_NAME string = acaEnvironmentStorageName

@description('Log Analytics workspace name.')
output LOG_ANALYTICS_NAME string = acaLogAnalyticsName
