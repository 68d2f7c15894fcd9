metadata name = 'Model share storage'
metadata description = 'Storage account and Azure Files share that hold the base model, the adapters and the app releases.'

@description('Required. Storage account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param accountName string

@description('Required. Name of the Azure Files share mounted at /mount in the container.')
@minLength(3)
@maxLength(63)
param shareName string

@description('Optional. Location of a newly created storage account.')
param location string = resourceGroup().location

@description('Optional. Tags applied to created resources.')
param tags object = {}

@description('Optional. Share quota in GiB; room for the base model, adapters and two app releases.')
@minValue(1)
@maxValue(102400)
param shareQuotaGiB int = 256

@description('Optional. Days a deleted share stays recoverable (soft delete).')
@minValue(1)
@maxValue(365)
param shareSoftDeleteDays int = 7

resource storageAccount 'Microsoft.Storage/storageAccounts@2025-06-01' = {
  // checkov:skip=CKV_AZURE_35:The environment has no virtual network, so its SMB mount and `aca-infer deploy` reach the share through the public endpoint; every access needs the account key.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: without a virtual network the public endpoint is the only way in.
  // checkov:skip=CKV_AZURE_206:The share holds copies that deploy and the fine-tuning run can upload again; geo-replication would double the cost without adding recovery.
  // checkov:skip=CKV_AZURE_43:False positive: checkov tests the symbol accountName, not its value; the param is held to 3-24 characters and Azure rejects anything but lowercase letters and digits.
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // The environment's SMB mount authenticates with the account key.
    allowSharedKeyAccess: true
    largeFileSharesState: 'Enabled'
    minimumTlsVersion: 'TLS1_2'
    publicNetworkAccess: 'Enabled'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2025-06-01' = {
  parent: storageAccount
  name: 'default'
  properties: {
    shareDeleteRetentionPolicy: {
      enabled: true
      days: shareSoftDeleteDays
    }
  }
}

resource share 'Microsoft.Storage/storageAccounts/fileServices/shares@2025-06-01' = {
  parent: fileService
  name: shareName
  properties: {
    accessTier: 'TransactionOptimized'
    enabledProtocols: 'SMB'
    shareQuota: shareQuotaGiB
  }
}

@description('The storage account name.')
output accountName string = storageAccount.name

@description('The file share name.')
output shareName string = share.name
