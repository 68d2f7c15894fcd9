metadata name = 'Container Apps environment'
metadata description = 'Workload-profiles environment with the Consumption profile, an optional GPU profile, and the share registered as environment storage.'

@description('Required. Container Apps environment name.')
@minLength(2)
@maxLength(60)
param name string

@description('Required. Name of the environment storage entry that points at the share.')
@minLength(2)
@maxLength(32)
param storageName string

@description('Required. Storage account that holds the share (its key is read here and never leaves the deployment).')
param storageAccountName string

@description('Required. Azure Files share name.')
param shareName string

@description('Required. Log Analytics workspace that receives the environment\'s logs.')
param logAnalyticsName string

@description('Optional. Location of a newly created environment.')
param location string = resourceGroup().location

@description('Optional. Tags applied to created resources.')
param tags object = {}

@description('Optional. Workload profile type for the app: serverless GPU (Consumption-GPU-*), dedicated GPU (NC*-A100) or CPU-only (Consumption).')
@allowed([
  'Consumption-GPU-NC8as-T4'
  'Consumption-GPU-NC24-A100'
  'NC24-A100'
  'NC48-A100'
  'NC96-A100'
  'Consumption'
])
param gpuProfileType string = 'Consumption-GPU-NC8as-T4'

@description('Optional. Name of the GPU workload profile inside the environment.')
@minLength(1)
@maxLength(15)
param workloadProfileName string = 'gpu'

@description('Optional. Minimum node count of a dedicated GPU profile (ignored for serverless and CPU-only profiles).')
@minValue(0)
param dedicatedMinimumCount int = 0

@description('Optional. Maximum node count of a dedicated GPU profile (ignored for serverless and CPU-only profiles).')
@minValue(1)
param dedicatedMaximumCount int = 1

@description('Optional. Mount mode of the share: ReadOnly keeps the replicas from changing the model files; deploy writes through the storage API.')
@allowed([
  'ReadOnly'
  'ReadWrite'
])
param storageAccessMode string = 'ReadOnly'

var isCpuOnly = gpuProfileType == 'Consumption'
var isDedicated = startsWith(gpuProfileType, 'NC')
var consumptionProfile = {
  name: 'Consumption'
  workloadProfileType: 'Consumption'
}
var dedicatedNodeCounts = {
  minimumCount: dedicatedMinimumCount
  maximumCount: dedicatedMaximumCount
}
var gpuProfileBase = {
  name: workloadProfileName
  workloadProfileType: gpuProfileType
}
var gpuProfile = union(gpuProfileBase, isDedicated ? dedicatedNodeCounts : {})

resource storageAccount 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' existing = {
  name: logAnalyticsName
}

resource managedEnvironment 'Microsoft.App/managedEnvironments@2025-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: workspace.properties.customerId
        sharedKey: workspace.listKeys().primarySharedKey
      }
    }
    publicNetworkAccess: 'Enabled'
    zoneRedundant: false
    // The Consumption profile is always present; serverless GPU profiles take no node counts.
    workloadProfiles: isCpuOnly ? [consumptionProfile] : [consumptionProfile, gpuProfile]
  }
}

resource environmentStorage 'Microsoft.App/managedEnvironments/storages@2025-07-01' = {
  parent: managedEnvironment
  name: storageName
  properties: {
    azureFile: {
      accountName: storageAccount.name
      accountKey: storageAccount.listKeys().keys[0].value
      shareName: shareName
      accessMode: storageAccessMode
    }
  }
}

@description('The environment name.')
output name string = managedEnvironment.name

@description('The environment resource ID.')
output resourceId string = managedEnvironment.id

@description('The environment storage entry that the app mounts.')
output storageName string = environmentStorage.name
