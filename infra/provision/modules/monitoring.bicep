metadata name = 'Log Analytics workspace'
metadata description = 'Workspace that receives the Container Apps environment\'s console and system logs.'

@description('Required. Log Analytics workspace name (4-63 letters, digits and hyphens).')
@minLength(4)
@maxLength(63)
param name string

@description('Optional. Location of a newly created workspace.')
param location string = resourceGroup().location

@description('Optional. Tags applied to created resources.')
param tags object = {}

@description('Optional. Days logs are kept.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Optional. Daily ingestion cap in GB (-1 for none); bounds the cost of a chatty replica.')
@minValue(-1)
param dailyQuotaGb int = -1

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

@description('The workspace name.')
output name string = workspace.name
